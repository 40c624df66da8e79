"""How a job's end reads from inside it, as in Slurm: slurmstepd's line in the job's error
stream when it is ended (time limit, cancel, requeue, node failure); `scontrol requeue` run by
the job itself returns 0 before the requeue ends it; an output directory made just after
sbatch returns (submitit's `%j` folder) is waited for."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from pathlib import Path

from conftest import Melon, needs_root, slurm_names_env, wait_for

END = r"slurmstepd: error: \*\*\* JOB {jid} ON {node} CANCELLED AT \d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d{due} \*\*\*"


def _end_line(text: str, jid: int, due: str = "") -> bool:
    return re.search("^" + END.format(jid=jid, node=re.escape(socket.gethostname()), due=re.escape(due)) + "$", text, re.M) is not None


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _sbatch(melon: Melon, *args: str) -> int:
    r = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, env=slurm_names_env(melon),
                       cwd=melon.work, timeout=60)
    assert r.returncode == 0, r.stderr
    return int(r.stdout)


def test_a_time_limit_is_told_in_the_error_stream_in_slurms_words(melon: Melon) -> None:
    jid = _sbatch(melon, "-t", "0:02", "-e", "ended-%j.err", "--wrap", "echo started; sleep 30")
    assert melon.wait_state(jid, {"TO", "CD", "F"})["state"] == "TO"
    err = (melon.work / f"ended-{jid}.err").read_text()
    assert _end_line(err, jid, " DUE TO TIME LIMIT"), err
    assert (melon.work / f"slurm-{jid}.out").read_text() == "started\n"  # stdout has none of it


def test_a_cancel_and_a_requeue_are_told_in_the_output_without_an_error_file(melon: Melon) -> None:
    cancelled = _sbatch(melon, "-t", "1:00", "--wrap", "echo started; sleep 60")
    wait_for(lambda: _text(melon.work / f"slurm-{cancelled}.out") == "started\n", what="the job to start")
    subprocess.run(["scancel", str(cancelled)], check=True, env=slurm_names_env(melon), timeout=30)
    melon.wait_state(cancelled, {"CA"})
    lines = (melon.work / f"slurm-{cancelled}.out").read_text().splitlines()
    assert lines[0] == "started" and _end_line(lines[1], cancelled), lines

    requeued = _sbatch(melon, "-t", "1:00", "--open-mode=append", "--wrap",
                       "echo run $SLURM_RESTART_COUNT; [ $SLURM_RESTART_COUNT = 1 ] || sleep 60")
    out = melon.work / f"slurm-{requeued}.out"
    wait_for(lambda: _text(out) == "run 0\n", what="the first run")
    subprocess.run(["scontrol", "requeue", str(requeued)], check=True, env=slurm_names_env(melon), timeout=30)
    assert melon.wait_state(requeued, {"CD"})["restarts"] == 1
    lines = out.read_text().splitlines()
    assert lines[0] == "run 0" and _end_line(lines[1], requeued, " DUE TO JOB REQUEUE") and lines[2] == "run 1", lines


@needs_root
def test_a_node_taken_down_is_told_as_a_node_failure(melon: Melon) -> None:
    jid = _sbatch(melon, "-t", "1:00", "--wrap", "echo started; sleep 60")
    out = melon.work / f"slurm-{jid}.out"
    wait_for(lambda: _text(out) == "started\n", what="the job to start")
    melon.run("mnode", "down", "local", "--reason", "fan failure")
    try:
        melon.wait_state(jid, {"NF"})
        wait_for(lambda: len(out.read_text().splitlines()) == 2, what="the end's line")
        assert _end_line(out.read_text().splitlines()[1], jid,
                         " DUE TO NODE FAILURE, SEE SLURMCTLD LOG FOR DETAILS"), out.read_text()
    finally:
        melon.run("mnode", "resume", "local")


def test_scontrol_requeue_inside_the_job_answers_before_the_job_is_ended(melon: Melon) -> None:
    """The batch shell traps TERM (so that it lives to print scontrol's exit code); scontrol
    itself has the default action, so a kill that came before its answer would end it, 143."""
    script = melon.work / "self-requeue.sh"
    script.write_text("#!/bin/bash\n"
                      "trap 'echo got TERM' TERM\n"
                      "echo run $SLURM_RESTART_COUNT\n"
                      "if [ $SLURM_RESTART_COUNT = 0 ]; then\n"
                      "  scontrol requeue $SLURM_JOB_ID; echo requeue exited $?\n"
                      "  sleep 60\n"
                      "fi\n")
    jid = _sbatch(melon, "-t", "1:00", "--open-mode=append", str(script))
    assert melon.wait_state(jid, {"CD", "F", "CA"})["restarts"] == 1
    lines = (melon.work / f"slurm-{jid}.out").read_text().splitlines()
    assert lines[0] == "run 0" and "requeue exited 0" in lines and lines[-1] == "run 1", lines
    events = melon.job(jid)["events"]
    assert [e["kind"] for e in events].count("requeued") == 1, events
    asked = next(e for e in events if e["kind"] == "requeue_requested")
    assert asked["data"]["via"] == "job", asked  # through the node's job channel


def test_an_output_directory_made_after_submission_is_waited_for(melon: Melon) -> None:
    """submitit makes its `%j` folder once sbatch has told it the id: the job, started
    milliseconds earlier, waits for it rather than failing."""
    r = subprocess.run(["sbatch", "-o", "logs/%j/out.log", "--wrap", "echo hello"], capture_output=True, text=True,
                       env=slurm_names_env(melon), cwd=melon.work, timeout=60)
    jid = int(r.stdout.split()[-1])
    time.sleep(1.0)  # the job has started and is waiting: the folder comes late, as from a slow tool
    assert melon.job(jid)["state"] == "R"
    (melon.work / "logs" / str(jid)).mkdir(parents=True)
    assert melon.wait_state(jid, {"CD", "F"})["state"] == "CD"
    assert (melon.work / "logs" / str(jid) / "out.log").read_text() == "hello\n"


def test_an_output_directory_that_never_comes_fails_the_job_naming_it(melon: Melon) -> None:
    jid = melon.submit("-o", "nowhere/%j.out", "--wrap", "echo hello")
    started = time.monotonic()
    job = melon.wait_state(jid, {"CD", "F"}, timeout=40)
    assert job["state"] == "F" and time.monotonic() - started >= 9
    folder = Path(melon.work) / "nowhere"
    assert f"its directory {folder} does not exist" in job["detail"], job["detail"]
    assert not folder.exists()  # never made for the user


def test_the_end_line_never_waits_on_a_stream_that_blocks(melon: Melon) -> None:
    """A job whose error stream is a FIFO its reader stopped reading is still ended at its
    deadline: the line is written aside from the node's loop, which goes on with other jobs."""
    fifo = melon.work / "stalled.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # opened, never read: writes block once it is full
    try:
        stalled = melon.submit("-t", "0:02", "-e", str(fifo), "--wrap",
                               "head -c 200000 /dev/zero >&2; sleep 30")
        other = melon.submit("-t", "0:30", "--wrap", "echo fine")
        assert melon.wait_state(other, {"CD"})["state"] == "CD"
        assert melon.wait_state(stalled, {"TO", "F", "CD"}, timeout=30)["state"] == "TO"
    finally:
        os.close(reader)

