"""remote/steps.py with real processes: a step is a process whose environment carries srun's
mark for this job, and its children inherit the mark; a mark naming another job is no step."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from melon_remote.protocol import STEP_MARK
from melon_remote.steps import session_members, step_pids


def _start(env_extra: dict[str, str], *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != STEP_MARK} | env_extra
    return subprocess.Popen([sys.executable, "-c", *args], env=env, start_new_session=True)


def test_steps_are_the_marked_processes_of_this_job_and_their_children() -> None:
    child_code = "import subprocess, sys, time; subprocess.Popen(['sleep', '30']); time.sleep(30)"
    step = _start({STEP_MARK: "41.0"}, child_code)
    batch = _start({}, "import time; time.sleep(30)")
    other = _start({STEP_MARK: "410.0"}, "import time; time.sleep(30)")  # another job's step, id prefixed alike
    try:
        deadline = time.monotonic() + 10
        while len(session_members(step.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        members = session_members(step.pid)
        assert step.pid in members and len(members) == 2  # the step and the sleep it started
        everyone = [*members, batch.pid, other.pid]
        assert sorted(step_pids(everyone, 41)) == sorted(members)
        assert step_pids(everyone, 410) == [other.pid]
        assert step_pids([batch.pid, 999999999], 41) == []  # unmarked, or gone
    finally:
        for proc in (step, batch, other):
            os.killpg(proc.pid, 9)
            proc.wait()
