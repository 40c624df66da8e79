"""What a job's files may do to the node: nothing a user names (an output path that is a FIFO, a
file on a hung mount) holds up other jobs; a job's files take its submitter's umask; its
temporary files and /dev/shm are its own and gone with it.

Real melond, real mbatch, real job processes on the local node; the hung mount is a real FUSE
mount whose server never answers, as a network file system whose server is gone behaves.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import BIN, Melon, as_user, needs_root, wait_for

_libc = ctypes.CDLL(None, use_errno=True)
MNT_DETACH = 2


@contextlib.contextmanager
def hung_mount(path: Path) -> Iterator[None]:
    """A FUSE mount at `path` whose server never answers: every lookup under it blocks, as
    on an NFS mount whose server is gone (until its descriptor is closed here)."""
    path.mkdir()
    fd = os.open("/dev/fuse", os.O_RDWR)
    options = f"fd={fd},rootmode=40000,user_id=0,group_id=0,allow_other".encode()
    if _libc.mount(b"melon-hung", str(path).encode(), b"fuse", 0, options) != 0:
        why = os.strerror(ctypes.get_errno())
        os.close(fd)
        pytest.skip(f"cannot mount FUSE here ({why})")
    try:
        yield
    finally:
        os.close(fd)  # aborts the connection: whatever still waits gets ENOTCONN
        _libc.umount2(str(path).encode(), MNT_DETACH)


def _ended(job: dict) -> dict:
    return next(e for e in job["events"] if e["kind"] == "ended")["data"]


@needs_root
def test_an_output_that_blocks_holds_up_its_own_job_and_no_other(melon: Melon) -> None:
    """A FIFO nobody reads fails its job at once, naming the path; a file on a hung mount keeps
    only its own job waiting (it can still be cancelled); other users' deadlines, starts and
    cancels go on to the second meanwhile."""
    fifo = melon.work / "fifo"
    subprocess.run(["mkfifo", str(fifo)], preexec_fn=as_user("nobody"), check=True)  # the attacker's own
    if not Path("/dev/fuse").exists():
        pytest.skip("no /dev/fuse on this machine: the hung mount cannot be made")
    with hung_mount(melon.work / "hung"):
        hung = melon.submit("-t", "5:00", "-o", str(melon.work / "hung" / "out.txt"), "--wrap", "echo never",
                            user="nobody")
        melon.wait_state(hung, {"R"})
        piped = melon.submit("-t", "5:00", "-o", str(fifo), "--wrap", "echo never", user="nobody")
        victims = [melon.submit("-t", "0:02", "--wrap", "trap '' TERM; sleep 30") for _ in range(1)]
        failed = melon.wait_state(piped, {"F"})
        assert str(fifo) in failed["detail"] and "FIFO" in failed["detail"], failed
        for jid in victims:  # its deadline to the second, while the hung job's child waits
            ended = _ended(melon.wait_state(jid, {"TO"}, timeout=20))
            assert 0 <= ended["kill_late_by"] < 1.0, ended
        later = melon.submit("-t", "1:00", "--wrap", "echo fine")
        melon.wait_state(later, {"CD"})
        assert melon.job(hung)["state"] == "R"  # still waiting on its mount, and only it
        melon.run("mcancel", str(hung))
        assert melon.wait_state(hung, {"CA"}, timeout=15)["state"] == "CA"


def _submit_with_umask(melon: Melon, mask: int, *args: str) -> int:
    r = subprocess.run([str(BIN / "mbatch"), "--parsable", *args], capture_output=True, text=True,
                       cwd=melon.work, env=melon.env(), preexec_fn=lambda: os.umask(mask), timeout=60)
    assert r.returncode == 0, r.stderr
    return int(r.stdout)


@needs_root
def test_a_job_runs_with_its_submitters_umask(melon: Melon) -> None:
    """As Slurm's SLURM_UMASK: output meant to stay private is private, files the job makes too."""
    private = _submit_with_umask(melon, 0o077, "-o", "private-%j.out", "--wrap",
                                 "echo $SLURM_UMASK; umask; touch made-by-private")
    shared = _submit_with_umask(melon, 0o002, "-o", "shared-%j.out", "--wrap", "touch made-by-shared")
    melon.wait_state(private, {"CD"})
    melon.wait_state(shared, {"CD"})
    mode = lambda name: stat.S_IMODE((melon.work / name).stat().st_mode)  # noqa: E731
    assert mode(f"private-{private}.out") == 0o600 and mode("made-by-private") == 0o600
    assert (melon.work / f"private-{private}.out").read_text().split() == ["0077", "0077"]
    assert mode(f"shared-{shared}.out") == 0o664 and mode("made-by-shared") == 0o664


@needs_root
def test_a_jobs_tmpdir_and_dev_shm_are_its_own_and_gone_with_it(melon: Melon) -> None:
    """Each job gets a TMPDIR of its own, removed at its end; where the node allows it (its
    supervisor is root), a private /dev/shm, which no other job sees, which ends with the job,
    and whose pages are the job's memory: filling it past --mem is the job's OOM, nobody else's."""
    script = ("#!/bin/sh\n"
              "echo tmpdir=$TMPDIR\n"
              "echo left > $TMPDIR/file; mkdir $TMPDIR/sub; echo left > $TMPDIR/sub/file\n"
              "echo mine > /dev/shm/$2-$SLURM_JOB_ID\n"
              "echo shm=$(ls /dev/shm | tr '\\n' ' ')\n"
              "sleep $1\n"
              "dd if=/dev/zero of=/dev/shm/$2-big bs=1M count=64 2>/dev/null\n")
    (melon.work / "tmp.sh").write_text(script)
    mark = f"melon-test-{os.urandom(4).hex()}"  # names no file of another run's
    first = melon.submit("--mem", "32M", "-o", "tmp-%j.out", "tmp.sh", "3", mark)
    wait_for(lambda: "shm=" in _text(melon, first), what="the first job to write its files")
    second = melon.submit("--mem", "32M", "-o", "tmp-%j.out", "tmp.sh", "0", mark)
    melon.wait_state(second, {"OOM"})
    melon.wait_state(first, {"OOM"})
    one, two = _lines(melon, first), _lines(melon, second)
    assert one["tmpdir"] != two["tmpdir"] and one["tmpdir"].startswith("/tmp/melon-")
    for out in (one, two):
        wait_for(lambda: not Path(out["tmpdir"]).exists(), what="the TMPDIR to be removed with what was left in it")
    assert one["shm"].split() == [f"{mark}-{first}"] and two["shm"].split() == [f"{mark}-{second}"]
    assert not list(Path("/dev/shm").glob(f"{mark}-*"))


def _text(melon: Melon, jid: int) -> str:
    path = melon.work / f"tmp-{jid}.out"
    return path.read_text() if path.exists() else ""


def _lines(melon: Melon, jid: int) -> dict[str, str]:
    return dict(line.split("=", 1) for line in _text(melon, jid).splitlines() if "=" in line)
