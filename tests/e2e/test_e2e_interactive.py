"""Interactive work as a person does it, through a real terminal (pexpect): `srun --pty bash`
and `salloc` on local nodes give a shell on a pty in the job, which follows the window's size,
takes Ctrl-C, runs srun across the allocation, ends the allocation with its exit code, hears
its job's end nearing, and ends as Slurm says when the job is cancelled or runs out of time."""
from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from conftest import Melon, slurm_names_env, wait_for

PROMPT = "PS1> "


SHELL = f"env PS1='{PROMPT}' bash --norc --noprofile"  # a shell whose prompt the test knows
CHILDREN: list[pexpect.spawn] = []


def _two_nodes(short_tmp: Path, settings: str = "") -> Iterator[Melon]:
    nodes = "".join(f'[nodes.n{i}]\npartition = "p"\nspool = "{short_tmp}/spool{i}"\n' for i in (1, 2))
    melon = Melon(short_tmp / "m", inventory=f"{settings}[partitions.p]\ndefault = true\n{nodes}")
    melon.start()
    try:
        yield melon
    finally:
        while CHILDREN:
            CHILDREN.pop().close(force=True)
        melon.cleanup()


@pytest.fixture
def two(short_tmp: Path) -> Iterator[Melon]:
    yield from _two_nodes(short_tmp)


def _spawn(melon: Melon, command: str, rows: int = 30, cols: int = 100) -> pexpect.spawn:
    """A terminal of the test's own, on which `command` runs under bash, as typed at a prompt."""
    env = slurm_names_env(melon, TERM="xterm", SHELL="/bin/bash")
    child = pexpect.spawn("/bin/bash", ["--norc", "--noprofile", "-c", command], env=env, cwd=str(melon.work),
                          encoding="utf-8", timeout=30, dimensions=(rows, cols))
    CHILDREN.append(child)
    return child


def _shell(child: pexpect.spawn) -> None:
    """Wait for the remote shell's prompt (bash --norc with PS1 from the job's environment)."""
    child.expect_exact(PROMPT)


def _pty_session(melon: Melon, limit: str = "5", after: str = "; echo srun exited $?") -> tuple[pexpect.spawn, int]:
    """`srun --pty` of a shell, typed at a prompt: the terminal, at the remote shell's prompt, and the job."""
    child = _spawn(melon, f"srun --pty -t {limit} {SHELL}{after}")
    _shell(child)
    child.sendline("echo job=$SLURM_JOB_ID")
    child.expect(r"job=(\d+)")
    jid = int(child.match.group(1))
    _shell(child)
    return child, jid


def _run(melon: Melon, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, env=slurm_names_env(melon), cwd=melon.work,
                          timeout=60)


def test_srun_pty_gives_a_shell_on_a_terminal_in_the_job(two: Melon) -> None:
    child = _spawn(two, f"srun --pty -t 5 {SHELL}; echo srun exited $?")
    _shell(child)
    child.sendline("tty; echo job=$SLURM_JOB_ID node=$SLURMD_NODENAME; stty size")
    child.expect(r"/dev/pts/\d+")
    child.expect(r"job=(\d+) node=n1")
    jid = int(child.match.group(1))
    child.expect_exact("30 100")
    _shell(child)
    child.setwinsize(40, 132)  # the window grows: the remote terminal follows (SIGWINCH)
    for _ in range(20):  # the new size travels srun -> melond -> the node; ask until it has arrived
        child.sendline("stty size")
        if child.expect_exact(["40 132", "30 100"]) == 0:
            break
        _shell(child)
        time.sleep(0.25)
    else:
        pytest.fail("the remote terminal never took the new window size")
    _shell(child)
    # a full-screen program: curses sizes itself from the terminal and reads a key in raw mode
    child.sendline("python3 -c \"import curses; curses.wrapper(lambda s: s.addstr(2, 5, 'CURSES %dx%d' % "
                   "s.getmaxyx()) or s.refresh() or s.addstr(3, 5, 'KEY %s' % chr(s.getch())) or s.refresh() or "
                   "s.getch())\"")
    child.expect_exact("CURSES 40x132")
    child.send("q")
    child.expect_exact("KEY q")
    child.send("x")
    _shell(child)
    child.sendline("sleep 100")
    time.sleep(1)
    child.sendintr()  # Ctrl-C reaches the remote shell's foreground job, not srun
    _shell(child)
    child.sendline("echo still here")
    child.expect_exact("still here")
    _shell(child)
    job = two.job(jid)
    assert job["state"] == "R" and job["interactive"] and job["attached"] == 1
    assert [s["state"] for s in job["steps"]] == ["RUNNING"]
    child.sendline("exit 3")
    child.expect(r"srun exited (\d+)")
    assert child.match.group(1) == "3"
    child.expect(pexpect.EOF)
    job = two.wait_state(jid, {"F", "CD"}, timeout=20)
    assert (job["state"], job["exit_code"]) == ("F", 3)  # the shell's end is the allocation's
    assert [(s["step_id"], s["state"], s["exit_code"]) for s in job["steps"]] == [(0, "FAILED", 3)]


def test_salloc_says_slurms_lines_and_srun_inside_reaches_every_node(two: Melon) -> None:
    child = _spawn(two, f"salloc -N 2 -t 5 -J inter {SHELL}; echo salloc exited $?")
    child.expect(r"salloc: Pending job allocation (\d+)")
    jid = child.match.group(1)
    child.expect_exact(f"salloc: Granted job allocation {jid}")
    _shell(child)
    child.sendline("srun -l bash -c 'echo on $SLURMD_NODENAME'")
    child.expect_exact("0: on n1")
    child.expect_exact("1: on n2")
    _shell(child)
    child.sendline("exit")
    child.expect_exact(f"salloc: Relinquishing job allocation {jid}")
    child.expect_exact("salloc exited 0")
    child.expect(pexpect.EOF)
    job = two.wait_state(int(jid), {"CD", "F"}, timeout=20)
    assert job["state"] == "CD" and job["name"] == "inter" and job["node_list"] == "n[1-2]"
    assert [s["name"] for s in job["steps"]] == ["env", "bash"]  # the shell's step, and srun's


def test_the_terminal_hears_its_end_nearing_and_an_extension_moves_it(two: Melon) -> None:
    child, jid = _pty_session(two, limit="0:20")
    # a 20-second job hears at half its limit: its 10 seconds left
    child.expect(rf"melon: job {jid} ends in \d+ s; `mextend -t \+1:00:00` for more", timeout=20)
    child.sendline("mextend -t +0:20")
    child.expect(rf"melon: job {jid} ends in \d+ s", timeout=40)  # the new end, told again
    child.expect_exact(f"DUE TO TIME LIMIT", timeout=30)
    child.expect(rf"melon: job {jid} reached its time limit")
    child.expect(r"srun exited (\d+)")
    assert int(child.match.group(1)) > 128
    assert two.job(jid)["state"] == "TO"


def test_cancel_from_another_terminal_ends_the_session_with_slurms_line(two: Melon) -> None:
    child = _spawn(two, f"salloc -t 5 {SHELL}; echo salloc exited $?")
    child.expect(r"salloc: Granted job allocation (\d+)")
    jid = child.match.group(1)
    _shell(child)
    assert _run(two, "scancel", jid).returncode == 0
    child.expect(rf"\*\*\* STEP {jid}\.0 ON n1 CANCELLED AT \S+ \*\*\*")
    child.expect(r"salloc exited (\d+)")
    assert int(child.match.group(1)) > 128
    assert two.job(int(jid))["state"] == "CA"


def test_ctrl_c_while_waiting_withdraws_the_request(two: Melon) -> None:
    blocker = _run(two, "sbatch", "--parsable", "-N", "2", "--exclusive", "--wrap", "sleep 60")
    assert blocker.returncode == 0, blocker.stderr
    child = _spawn(two, "salloc -N 2 -t 5; echo salloc exited $?")
    child.expect(r"salloc: Pending job allocation (\d+)")
    jid = int(child.match.group(1))
    child.expect_exact(f"salloc: job {jid} queued and waiting for resources")
    child.sendintr()
    child.expect_exact(f"salloc: error: Job allocation {jid} has been revoked.")
    child.expect_exact("salloc exited 1")
    assert two.wait_state(jid, {"CA"}, timeout=10)["state"] == "CA"
    _run(two, "scancel", blocker.stdout.strip())


def test_a_batch_job_has_no_terminal(two: Melon) -> None:
    jid = _run(two, "sbatch", "--parsable", "--wrap", "sleep 30").stdout.strip()
    two.wait_state(int(jid), {"R"}, timeout=20)
    child = _spawn(two, f"python3 -c 'import os; from melon_cli.common import client; "
                        f"from melon_cli.terminal import attach; "
                        f"print(attach(client(os.environ[\"MELON_API\"]), {jid}, [\"bash\"], cwd=None, final=True))'")
    child.expect(re.escape(f"job {jid} is a batch job; terminals open in interactive allocations"))
    _run(two, "scancel", jid)


def test_a_session_outlives_a_restart_of_melond(two: Melon) -> None:
    """kill -9 of melond mid-session: the shell runs on in its terminal on the node, srun says it
    is reattaching, and once melond is back the session goes on with what was written meanwhile;
    one step, recorded once, ends with the shell."""
    import signal
    child, jid = _pty_session(two)
    child.sendline("(sleep 2; echo written while away) &")
    _shell(child)
    two.stop(signal.SIGKILL)
    child.expect_exact("srun: lost the connection to melond; reattaching to job")
    time.sleep(2.5)
    two.start()
    child.expect_exact("written while away", timeout=30)
    child.sendline("echo back again")
    child.expect_exact("back again")
    child.sendline("exit 4")
    child.expect(r"srun exited (\d+)")
    assert child.match.group(1) == "4"
    job = two.wait_state(jid, {"F", "CD"}, timeout=20)
    assert (job["state"], job["exit_code"]) == ("F", 4)
    assert [(s["step_id"], s["state"], s["exit_code"]) for s in job["steps"]] == [(0, "FAILED", 4)]
    assert [e["kind"] for e in job["events"]].count("started") == 1


def test_closing_the_users_terminal_ends_the_session_and_the_allocation(two: Melon) -> None:
    """The login's terminal goes (its window closed: SIGHUP to srun): the remote shell is hung
    up, as a closed ssh session's, and the allocation ends with it."""
    child, jid = _pty_session(two, after="")
    child.close(force=True)
    CHILDREN.remove(child)
    job = two.wait_state(jid, {"F", "CD", "CA"}, timeout=20)
    assert (job["state"], job["signal"]) == ("F", 1), job  # the shell ended by SIGHUP
    assert [s["state"] for s in job["steps"]] == ["CANCELLED"]


def test_a_session_outlives_its_nodes_helper(two: Melon, short_tmp: Path) -> None:
    """kill -9 of the node's helper mid-session (melond runs on and reconnects): the new helper
    takes the terminal up again from the job's holder, and the session goes on."""
    import os
    import signal
    child, jid = _pty_session(two)
    spool = f"{short_tmp}/spool1"

    def helpers() -> list[int]:
        found = []
        for name in os.listdir("/proc"):
            try:
                argv = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if name.isdigit() and b"-c" in argv and spool.encode() in argv and b"melond" in _parent_cmdline(name):
                found.append(int(name))  # the helper melond started, not the supervisor it forked
        return found
    [old] = helpers()
    child.sendline("(sleep 2; echo written while the helper was away) &")
    _shell(child)
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: helpers() and helpers() != [old], timeout=30, what="a new helper on n1")
    child.expect_exact("written while the helper was away", timeout=30)
    time.sleep(1)
    child.sendline("echo still typing")
    child.expect_exact("still typing")
    child.sendline("exit 5")
    child.expect(r"srun exited (\d+)")
    assert child.match.group(1) == "5"
    assert two.wait_state(jid, {"F", "CD"}, timeout=20)["exit_code"] == 5


def _parent_cmdline(pid: str) -> bytes:
    try:
        ppid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
        return Path(f"/proc/{ppid}/cmdline").read_bytes()
    except (OSError, IndexError):
        return b""


INNER = "IN> "
INNER_SHELL = "env PS1='I''N> ' bash --norc --noprofile"  # typed, so echoed: the prompt is not in it


def _inner_pty(child: pexpect.spawn, node: str, code: int) -> None:
    """`srun --pty -w NODE` of a shell typed at an allocation's shell: a terminal of its own on that
    node, its window's size, a resize, Ctrl-C, and srun ending with the inner shell's code."""
    child.sendline(f"srun --pty -w {node} {INNER_SHELL}; echo inner exited $?")
    child.expect_exact(INNER)
    child.sendline("tty; echo node=$SLURMD_NODENAME step=$SLURM_STEP_ID; stty size")
    child.expect(r"/dev/pts/\d+")
    child.expect(rf"node={node} step=(\d+)")
    child.expect_exact("30 100")
    child.expect_exact(INNER)
    child.setwinsize(35, 90)
    for _ in range(20):
        child.sendline("stty size")
        if child.expect_exact(["35 90", "30 100"]) == 0:
            break
        child.expect_exact(INNER)
        time.sleep(0.25)
    else:
        pytest.fail("the inner terminal never took the new window size")
    child.expect_exact(INNER)
    child.sendline("sleep 100")
    time.sleep(1)
    child.sendintr()
    child.expect_exact(INNER)
    child.sendline(f"exit {code}")
    child.expect(r"inner exited (\d+)")
    assert child.match.group(1) == str(code)


def test_srun_pty_inside_an_allocation_opens_a_terminal_on_the_node_named(two: Melon) -> None:
    child = _spawn(two, f"salloc -N 2 -t 5 {SHELL}; echo salloc exited $?")
    child.expect(r"salloc: Granted job allocation (\d+)")
    jid = int(child.match.group(1))
    _shell(child)
    _inner_pty(child, "n2", 4)
    _shell(child)
    child.sendline("echo outer=$SLURMD_NODENAME")  # back in salloc's shell, on the first node
    child.expect_exact("outer=n1")
    _shell(child)
    assert two.job(jid)["attached"] == 1
    child.sendline("exit")
    child.expect_exact("salloc exited 0")
    job = two.wait_state(jid, {"CD", "F"}, timeout=20)
    assert [(s["name"], s["node"], s["state"], s["exit_code"]) for s in job["steps"]] == [
        ("env", "n1", "COMPLETED", 0), ("env", "n2", "FAILED", 4)]


def test_srun_pty_inside_a_batch_job_runs_without_a_terminal_and_says_so(two: Melon) -> None:
    out = two.work / "pty.out"
    jid = _run(two, "sbatch", "--parsable", "-o", str(out), "--wrap", "srun --pty echo inside; echo rc=$?")
    assert jid.returncode == 0, jid.stderr
    two.wait_state(int(jid.stdout.strip()), {"CD", "F"}, timeout=30)
    text = out.read_text()
    assert "srun: warning: --pty: job" in text and "is a batch job" in text
    assert "inside" in text and "rc=0" in text


@pytest.fixture
def login(short_tmp: Path) -> Iterator[Melon]:
    """Two nodes, and salloc's command on the login node (use_interactive_step off)."""
    yield from _two_nodes(short_tmp, "use_interactive_step = false\n")


def test_salloc_without_interactive_step_runs_its_shell_on_the_login_node(login: Melon) -> None:
    import os
    config = _run(login, "scontrol", "show", "config")
    assert re.search(r"LaunchParameters\s+= \(null\)", config.stdout), config.stdout
    child = _spawn(login, f"salloc -N 2 -t 5 -J here {SHELL}; echo salloc exited $?")
    child.expect(r"salloc: Granted job allocation (\d+)")
    jid = int(child.match.group(1))
    _shell(child)
    # the shell is salloc's child here, outside the job, with the allocation's variables and no node's own
    child.sendline("echo job=$SLURM_JOB_ID list=$SLURM_JOB_NODELIST n=$SLURM_NNODES node=[$SLURMD_NODENAME] "
                   "parent=$PPID")
    child.expect(rf"job={jid} list=n\[1-2\] n=2 node=\[\] parent=(\d+)")
    assert b"salloc" in Path(f"/proc/{child.match.group(1)}/cmdline").read_bytes()
    _shell(child)
    child.sendline("srun -l bash -c 'echo on $SLURMD_NODENAME'; echo srun-$((1 + 1))-done")
    child.expect_exact("srun-2-done")  # both tasks run on nodes: their lines come in either order
    assert {"0: on n1", "1: on n2"} <= {line.strip() for line in child.before.splitlines()}, child.before
    _shell(child)
    _inner_pty(child, "n2", 6)
    _shell(child)
    child.sendline("mextend -t +0:10 && echo extended")
    child.expect_exact("extended")
    _shell(child)
    child.sendline("exit 5")
    child.expect_exact(f"salloc: Relinquishing job allocation {jid}")
    child.expect_exact("salloc exited 5")
    job = login.wait_state(jid, {"CD", "F"}, timeout=20)
    assert (job["state"], job["exit_code"]) == ("F", 5)
    assert [(s["name"], s["node"], s["state"]) for s in job["steps"]] == [
        ("bash", "n[1-2]", "COMPLETED"), ("env", "n2", "FAILED")]
    assert os.environ.get("MELON_JOB_API") is None


def test_a_login_node_shell_ends_when_its_allocation_is_cancelled(login: Melon) -> None:
    child = _spawn(login, f"salloc -t 5 {SHELL}; echo salloc exited $?")
    child.expect(r"salloc: Granted job allocation (\d+)")
    jid = child.match.group(1)
    _shell(child)
    assert _run(login, "scancel", jid).returncode == 0
    child.expect_exact(f"salloc: Job allocation {jid} has been revoked.", timeout=20)
    child.expect(r"salloc exited (\d+)")
    assert int(child.match.group(1)) == 129  # the shell hung up
    assert login.job(int(jid))["state"] == "CA"


def test_sattach_reads_and_types_into_a_running_session_from_another_login(two: Melon) -> None:
    child, jid = _pty_session(two)
    viewer = _spawn(two, f"sattach {jid}.0; echo sattach exited $?")
    viewer.expect_exact(f"sattach: attached to step {jid}.0")
    assert wait_for(lambda: two.job(jid)["attached"] == 2, timeout=10, what="the second reader")
    child.sendline("echo from-the-owner-$((2 * 3))")
    viewer.expect_exact("from-the-owner-6")  # what the session writes reaches both
    viewer.send("echo typed-by-sattach-$((3 * 3))\r")
    child.expect_exact("typed-by-sattach-9")  # and what sattach types reaches the session
    _shell(child)
    viewer.send("\x1c")  # Ctrl-\ detaches: the session runs on
    viewer.expect_exact("sattach exited 0")
    assert wait_for(lambda: two.job(jid)["attached"] == 1, timeout=10, what="the reader gone")
    child.sendline("echo still-mine")
    child.expect_exact("still-mine")
    _shell(child)
    batch = _run(two, "sbatch", "--parsable", "--wrap", "srun sleep 30")
    bid = int(batch.stdout.strip())
    wait_for(lambda: two.job(bid)["steps"], timeout=20, what="the batch job's step")
    refused = _run(two, "sattach", f"{bid}.0")
    assert refused.returncode == 1 and "is a batch job" in refused.stderr, refused.stderr
    bad = _run(two, "sattach", "--layout", f"{jid}.0")
    assert bad.returncode == 1 and "--layout is not supported by Melon" in bad.stderr
    _run(two, "scancel", str(bid))
    child.sendline("exit 0")
    child.expect(r"srun exited 0")


def test_what_is_typed_ahead_of_a_terminal_reaches_it(two: Melon) -> None:
    """A user types before the remote shell is up: nothing typed is lost, through melond's
    WebSocket (srun --pty outside a job) or a node's job channel (srun --pty inside one)."""
    child = _spawn(two, f"srun --pty -N 2 -t 5 {SHELL}; echo srun exited $?")
    child.sendline("echo ahead-$((4 * 4))")
    child.expect_exact("ahead-16")
    _shell(child)
    child.sendline(f"srun --pty -w n2 {INNER_SHELL}")
    child.sendline("echo inner-ahead-$((5 * 5)) on $SLURMD_NODENAME")
    child.expect_exact("inner-ahead-25 on n2")
    child.sendline("exit 0")
    _shell(child)
    child.sendline("exit 0")
    child.expect_exact("srun exited 0")
