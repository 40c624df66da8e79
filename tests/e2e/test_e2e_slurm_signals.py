"""sbatch --signal as Slurm delivers it, and PyTorch Lightning's auto-requeue that depends on it.

Slurm sends the warning signal of `--signal=SIG@N` to the job's steps (what srun started), not to
the batch shell; `--signal=B:SIG@N` to the batch shell only. Lightning's documented script,
`#SBATCH --signal=SIGUSR1@90` then `srun python train.py`, counts on the first: its SIGUSR1
handler checkpoints and runs `scontrol requeue`, while the batch shell, which has no handler and
would die of SIGUSR1, never sees it. tests/e2e/slurm_tools/lightning_replay.py replays the
trainer's side without torch.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import Melon, slurm_names_env

TOOLS = Path(__file__).parent / "slurm_tools"
ENDED = {"CD", "F", "TO", "CA", "OOM", "NF"}


def _sbatch(melon: Melon, folder: Path, script: str, *args: str) -> int:
    (folder / "job.sh").write_text(script)
    r = subprocess.run(["sbatch", *args, "job.sh"], capture_output=True, text=True, env=slurm_names_env(melon),
                       cwd=folder, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return int(re.fullmatch(r"Submitted batch job (\d+)\n", r.stdout).group(1))


# The batch shell traps the signal and waits for srun in the background (a trapped signal ends
# `wait` at once; a foreground srun would hold the trap back until it ended). The step records
# each signal it gets and ends once one of the two has recorded one: both are then written
# before the job ends, whoever got the signal, so the test reads them after the end, with no sleep.
WAITS_FOR_ITS_STEP = """\
trap 'echo "batch shell got USR1" >> batch.log' USR1
srun python step.py &
step=$!
while kill -0 $step 2>/dev/null; do wait $step; done
echo "batch shell done" >> batch.log
"""
SIGNALLED = """#!/bin/bash
#SBATCH --time=0:10
#SBATCH --signal={prefix}USR1@8
#SBATCH --output=out-%j.txt
""" + WAITS_FOR_ITS_STEP
STEP = """import os, signal, time
def record(signum, frame):
    with open("step.log", "a") as f:
        f.write(f"step got {signal.Signals(signum).name}\\n")
signal.signal(signal.SIGUSR1, record)
while not any(os.path.exists(f) and "got" in open(f).read() for f in ("step.log", "batch.log")):
    time.sleep(0.02)
"""


@pytest.mark.parametrize("prefix", ["B:", ""])
def test_signal_reaches_the_batch_shell_with_b_and_only_the_steps_without(melon: Melon, prefix: str) -> None:
    """`--signal=B:USR1@8`: the batch shell's trap fires and srun's step gets nothing;
    `--signal=USR1@8`: the step gets it, once, and the batch shell's trap does not fire."""
    folder = melon.work / f"signal{prefix.rstrip(':')}"
    folder.mkdir()
    (folder / "step.py").write_text(STEP)
    jid = _sbatch(melon, folder, SIGNALLED.format(prefix=prefix))
    job = melon.wait_state(jid, ENDED, timeout=30)
    logs = {name: (folder / name).read_text() if (folder / name).exists() else ""
            for name in ("batch.log", "step.log", f"out-{jid}.txt")}
    assert job["state"] == "CD", (job["state"], job["detail"], logs)
    if prefix == "B:":
        assert logs["step.log"] == "", logs
        assert logs["batch.log"] == "batch shell got USR1\nbatch shell done\n", logs
    else:
        assert logs["batch.log"] == "batch shell done\n", logs
        assert logs["step.log"] == "step got SIGUSR1\n", logs


# Lightning's documented script (docs/source-pytorch/clouds/cluster_advanced.rst: "Design your
# training script", step 5 "auto-resubmit"), with a 20 s limit and the signal 10 s before it
# instead of hours and 90 s. --requeue lets the job be requeued even where a site's JobRequeue=0
# makes that off by default; --open-mode=append keeps the first run's log, which a requeued run
# truncates by default (JobFileAppend=0).
LIGHTNING = """#!/bin/bash
#SBATCH --job-name=lightning
#SBATCH --time=0:20
#SBATCH --signal=SIGUSR1@10
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=lightning-%j.out

srun python lightning_replay.py --steps 140 --step-seconds 0.1
"""


@pytest.mark.parametrize("array", [False, True], ids=["job", "array-task"])
def test_lightning_auto_requeue_checkpoints_requeues_and_resumes(melon: Melon, array: bool) -> None:
    """SIGUSR1 10 s before the limit reaches the trainer under srun and not the batch shell; the
    trainer writes hpc_ckpt_1.ckpt, `scontrol requeue` returns 0 ("Requeued SLURM job: ID"),
    SIGTERM is bypassed until the trainer stops; the job runs again under its own id with
    SLURM_RESTART_COUNT=1, resumes from the checkpoint and completes the 14 s of training. An
    array task (`sbatch --array=3`, a sweep's usual shape) is requeued as `scontrol requeue A_3`."""
    folder = melon.work / "lightning"
    folder.mkdir()
    shutil.copy(TOOLS / "lightning_replay.py", folder)
    jid = _sbatch(melon, folder, LIGHTNING, *(["--array=3"] if array else []))
    requeued = f"{jid}_3" if array else str(jid)  # one task: its own id is the array's
    log = folder / f"lightning-{jid}.out"
    job = melon.wait_state(jid, ENDED, timeout=60)  # the signal at 10 s, a second run of ~5 s
    text = log.read_text() if log.exists() else ""
    assert job["state"] == "CD" and job["restarts"] == 1, \
        (job["state"], job["restarts"], job["exit_code"], job["signal"], job["detail"], text)
    kinds = [e["kind"] for e in job["events"]]
    # asked while the first run was still running: its batch shell had lived through SIGUSR1
    assert "requeue_requested" in kinds and "requeued_ended" not in kinds, (kinds, text)

    first, second = text.split(f"replay: job {jid} ")[1:]
    assert first.startswith("SLURM_RESTART_COUNT=0 MELON_RESTART_COUNT=0\n"), text
    assert second.startswith("SLURM_RESTART_COUNT=1 MELON_RESTART_COUNT=1\n"), text
    assert "SLURM auto-requeueing enabled. Setting signal handlers.\n" in first
    assert first.count("Handling auto-requeue signal: 10\n") == 1, text  # once: not also from srun
    assert f"requeing job {requeued}...\n" in first
    assert f"Requeued SLURM job: {requeued}\n" in first and "failed with error code" not in first, text
    assert "Bypassing SIGTERM: 15\n" in first, text

    assert sorted(p.name for p in folder.glob("*ckpt*")) == ["hpc_ckpt_1.ckpt"]
    saved = json.loads((folder / "hpc_ckpt_1.ckpt").read_text())["global_step"]
    assert 0 < saved < 140
    checkpoint = folder / "hpc_ckpt_1.ckpt"
    assert f"Restoring states from the checkpoint path at {checkpoint}\n" in second, text
    assert f"Restored all states from the checkpoint at {checkpoint}\n" in second
    assert f"replay: training from step {saved}\n" in second, text
    assert second.endswith("`Trainer.fit` stopped: `max_steps=140` reached.\n"), text
    assert "Handling auto-requeue signal" not in second


# scancel's signal, as its man page and scancel.c (KILL_JOB_BATCH, KILL_FULL_JOB) send it: to the
# steps by default, to the batch shell alone with -b, to everything with -f. The step says it is
# ready once its handler is set; it ends when the logs named in WAIT_FOR have a "got" line, so the
# job ends, with both logs written, once everything that should get the signal has.
SCANCELLED = """#!/bin/bash
#SBATCH --time=1:00
#SBATCH --output=out-%j.txt
""" + WAITS_FOR_ITS_STEP
STEP_UNTIL = """import os, signal, time
WAIT_FOR = {files!r}
def record(signum, frame):
    with open("step.log", "a") as f:
        f.write(f"step got {{signal.Signals(signum).name}}\\n")
signal.signal(signal.SIGUSR1, record)
open("ready", "w").close()
while not all(os.path.exists(f) and "got" in open(f).read() for f in WAIT_FOR):
    time.sleep(0.02)
"""


@pytest.mark.parametrize(("flags", "step_gets", "batch_gets"), [
    ([], True, False), (["-b"], False, True), (["--full"], True, True)], ids=["steps", "batch", "full"])
def test_scancel_signal_goes_to_the_steps_the_batch_shell_or_both(melon: Melon, flags: list[str], step_gets: bool,
                                                                   batch_gets: bool) -> None:
    from conftest import wait_for
    folder = melon.work / ("scancel" + "".join(flags))
    folder.mkdir()
    files = [name for name, gets in (("step.log", step_gets), ("batch.log", batch_gets)) if gets]
    (folder / "step.py").write_text(STEP_UNTIL.format(files=files))
    jid = _sbatch(melon, folder, SCANCELLED)
    wait_for(lambda: (folder / "ready").exists(), timeout=30, what="the step to set its handler")
    r = subprocess.run(["scancel", str(jid), "--signal", "SIGUSR1", *flags], capture_output=True, text=True,
                       env=slurm_names_env(melon), timeout=30)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    job = melon.wait_state(jid, ENDED, timeout=30)
    logs = {name: (folder / name).read_text() if (folder / name).exists() else "" for name in ("batch.log", "step.log")}
    assert job["state"] == "CD", (job["state"], logs)
    # with -f srun itself gets it too and forwards it (as Slurm's srun does), so the step may get it twice
    assert set(logs["step.log"].splitlines()) == ({"step got SIGUSR1"} if step_gets else set()), logs
    assert logs["step.log"].count("\n") <= (2 if batch_gets else 1), logs
    assert logs["batch.log"] == ("batch shell got USR1\n" if batch_gets else "") + "batch shell done\n", logs
