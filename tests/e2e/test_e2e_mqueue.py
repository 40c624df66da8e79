"""mqueue as squeue users drive it, with the real melond: -o, -h, -p/-n/-w, -S, --start, -i, --watch."""
from __future__ import annotations

import signal
import subprocess
import time

from conftest import BIN, Melon, wait_for


def _lines(melon: Melon, *args: str) -> list[str]:
    return melon.run("mqueue", *args).stdout.splitlines()


def test_format_header_filters_and_sort(melon: Melon) -> None:
    running = melon.submit("-t", "5", "-J", "runner", "--wrap", "sleep 60")
    melon.wait_state(running, {"R"})
    big = melon.submit("-t", "5", "-c", "2", "-J", "big", "--wrap", "true")
    held = melon.submit("-H", "-t", "7", "-J", "held", "--wrap", "true")
    lines = _lines(melon, "-o", "%.6i|%j|%T|%l|%C|%P|%R")
    assert lines[0] == " JOBID|NAME|STATE|TIME_LIMIT|CPUS|PARTITION|NODELIST(REASON)"
    rows = {int(line.split("|")[0]): line.split("|") for line in lines[1:]}
    assert rows[running][1:] == ["runner", "RUNNING", "5:00", "1", "local", "local"]
    assert rows[big][1:5] == ["big", "PENDING", "5:00", "2"] and rows[big][6] == "(Resources)"
    assert rows[held][6] == "(JobHeldUser)"
    assert _lines(melon, "-h", "-o", "%i") == [str(running), str(big), str(held)]
    assert _lines(melon, "-h", "-o", "%i", "-S", "-i") == [str(held), str(big), str(running)]
    assert _lines(melon, "-h", "-o", "%i", "-S", "-l,i") == [str(held), str(running), str(big)]
    assert _lines(melon, "-h", "-o", "%i", "-n", "big,held") == [str(big), str(held)]
    assert _lines(melon, "-h", "-o", "%i", "-w", "local") == [str(running)]
    assert _lines(melon, "-h", "-o", "%i", "-p", "nowhere") == []
    assert _lines(melon, "-h")[0].split()[0] == str(running)  # -h is --noheader, as in squeue
    assert "Usage: mqueue" in melon.run("mqueue", "--help").stdout
    melon.run("mcancel", str(running), str(big), str(held))


def test_start_shows_the_schedulers_expected_start(melon: Melon) -> None:
    blocker = melon.submit("-t", "2:00", "-c", "2", "--wrap", "sleep 60")
    melon.wait_state(blocker, {"R"})
    start = melon.job(blocker)["start_time"]
    waiting = melon.submit("-t", "1:00", "-c", "2", "--wrap", "true")
    def expected() -> list[str] | None:
        lines = _lines(melon, "--start")
        return lines if len(lines) == 2 and "N/A" not in lines[1] else None
    lines = wait_for(expected, what="the plan to give the waiting job a start time")
    assert lines[0].split() == ["JOBID", "PARTITION", "NAME", "USER", "ST", "START_TIME", "NODES",
                                "NODELIST(REASON)"]
    when = time.mktime(time.strptime(lines[1].split()[5], "%Y-%m-%dT%H:%M:%S"))
    assert abs(when - (start + 120)) <= 2  # the blocker's deadline
    assert lines[1].split()[0] == str(waiting)
    melon.run("mcancel", str(blocker), str(waiting))


def test_iterate_and_watch_redraw_until_interrupted(melon: Melon) -> None:
    jid = melon.submit("-H", "--wrap", "true")
    for args, marker in ((["-i", "0.2"], "JOBID"), (["--watch", "-i", "0.2"], "\x1b[H\x1b[2J")):
        proc = subprocess.Popen([str(BIN / "mqueue"), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=melon.env(), text=True)
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0 and "Traceback" not in err, err
        assert out.count(marker) >= 3 and out.count(str(jid)) >= 3, out
    melon.run("mcancel", str(jid))


def test_bad_format_sort_and_interval_exit_1(melon: Melon) -> None:
    for args, named in ((["-o", "%i %W"], "'%W'"), (["-S", "x"], "'x'"), (["-i", "soon"], "'soon'"),
                        (["-i", "0"], "'0'"), (["-t", "XX"], "XX")):
        r = melon.run("mqueue", *args, check=False)
        assert r.returncode == 1 and named in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
