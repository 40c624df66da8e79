"""Slurm's command names backed by melond (opt-in through `melon-slurm env`), printing what the
tools that parse Slurm's output expect (SLURM-CLIENTS.md)."""
from __future__ import annotations

import json
import signal
import socket
import subprocess

import pytest

from conftest import BIN, Melon, slurm_names_env, wait_for


@pytest.fixture
def slurm_env(melon: Melon) -> dict:
    return slurm_names_env(melon)


def _run(melon: Melon, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, env=env, cwd=melon.work, timeout=60)


def test_they_are_not_on_path_until_asked_for(melon: Melon) -> None:
    assert not (BIN / "squeue").exists() and not (BIN / "scancel").exists()


def test_squeue_default_layout_formats_and_ids(melon: Melon, slurm_env: dict) -> None:
    run = melon.submit("-t", "5", "-J", "runner", "--wrap", "sleep 60")
    melon.wait_state(run, {"R"})
    arr = melon.submit("-H", "-J", "held", "--array", "1-4", "--wrap", "true")
    done = melon.submit("--wrap", "true")
    melon.wait_state(done, {"CD"})
    out = _run(melon, slurm_env, "squeue").stdout.splitlines()
    assert out[0] == "             JOBID PARTITION     NAME     USER ST       TIME  NODES NODELIST(REASON)"
    assert out[1].split()[0] == str(run) and out[1].split()[-1] == "local"
    assert out[2].split()[0] == f"{arr}_[1-4]" and out[2].endswith("(JobHeldUser)")
    assert len(out) == 3  # the finished job is not in the default view
    assert _run(melon, slurm_env, "squeue", "-h", "-o", "%i|%T").stdout == f"{run}|RUNNING\n{arr}_[1-4]|PENDING\n"
    assert _run(melon, slurm_env, "squeue", "--noheader", "--format=%i %t", "--job", f"{run},{arr}").stdout \
        == f"{run} R\n{arr}_[1-4] PD\n"
    assert f"{done} COMPLETED" in _run(melon, slurm_env, "squeue", "-h", "-o", "%i %T", "-t", "all").stdout
    assert _run(melon, slurm_env, "squeue", "-h", "-r", "-o", "%i", "-n", "held").stdout.split() == \
        [f"{arr}_{t}" for t in (1, 2, 3, 4)]
    header = _run(melon, slurm_env, "squeue", "--me", "-o", "%i,%T", "--state=all").stdout.splitlines()[0]
    assert header == "JOBID,STATE"
    melon.run("mcancel", str(run), str(arr))


def test_squeue_long_starts_with_the_date_and_spells_the_state(melon: Melon, slurm_env: dict) -> None:
    """-l: squeue.c's long layout (jobarrayid:.18 ,partition:.9 ,name:.8 ,username:.8 ,state:.8
    ,timeused:.10 ,timelimit:.9 ,numnodes:.6 ,reasonlist:0) after print_date()'s line; a right-
    justified time is never cut (print.c _print_secs), a title is."""
    import re
    run = melon.submit("-t", "10-00:00:00", "-J", "runner", "--wrap", "sleep 60")
    melon.wait_state(run, {"R"})
    held = melon.submit("-H", "-t", "5", "-J", "held", "--wrap", "true")
    user = melon.job(run)["user"]
    out = _run(melon, slurm_env, "squeue", "-l").stdout.splitlines()
    assert re.fullmatch(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d \d{4}", out[0]), out[0]
    assert out[1] == ("             JOBID PARTITION     NAME     USER    STATE       TIME TIME_LIMI  NODES "
                      "NODELIST(REASON)")
    assert re.fullmatch(rf" +{run}     local   runner {user[:8]:>8}  RUNNING +\d:\d\d 10-00:00:00      1 local",
                        out[2]), out
    assert out[3] == f"{held:>18}     local     held {user[:8]:>8}  PENDING       0:00      5:00      1 (JobHeldUser)"
    assert _run(melon, slurm_env, "squeue", "--long", "-h").stdout.splitlines()[0].split()[0] == str(run)
    r = _run(melon, slurm_env, "squeue", "-l", "-o", "%i")
    assert (r.returncode, r.stderr) == (1, "squeue: fatal: Options -o(--format) and -l(--long) are mutually "
                                           "exclusive. Please remove one and retry.\n")
    melon.run("mcancel", str(run), str(held))


def test_squeue_unknown_id_is_slurms_error(melon: Melon, slurm_env: dict) -> None:
    r = _run(melon, slurm_env, "squeue", "-j", "987654")
    assert r.returncode == 1 and r.stderr == "slurm_load_jobs error: Invalid job id specified\n" and r.stdout == ""
    jid = melon.submit("--wrap", "true")
    melon.wait_state(jid, {"CD"})
    r = _run(melon, slurm_env, "squeue", "-h", "-j", str(jid))  # known, finished: no line, exit 0
    assert r.returncode == 0 and r.stdout == ""


def test_scancel_is_silent_and_forgiving_as_slurms(melon: Melon, slurm_env: dict) -> None:
    held = melon.submit("-H", "--wrap", "true")
    arr = melon.submit("-H", "--array", "1-3", "--wrap", "true")
    r = _run(melon, slurm_env, "scancel", str(held), f"{arr}_2")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert melon.job(held)["state"] == "CA"
    assert {j["array_task_id"]: j["state"] for j in melon.jobs("--all", "-r", "-j", str(arr))} == \
        {1: "PD", 2: "CA", 3: "PD"}
    r = _run(melon, slurm_env, "scancel", str(held), "987654")  # ended, and unknown: still exit 0
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    r = _run(melon, slurm_env, "scancel", "--me", "--clusters=all")
    assert r.returncode == 0
    wait_for(lambda: {j["state"] for j in melon.jobs("--all", "-r", "-j", str(arr))} == {"CA"},
             what="--me to cancel the rest")
    r = _run(melon, slurm_env, "scancel")
    assert r.returncode == 1 and "No job identification provided" in r.stderr


def test_scancel_signal_after_the_id(melon: Melon, slurm_env: dict) -> None:
    """A signal goes to the steps unless -b (the batch shell) or -f (everything): this job has no
    steps, so USR2 reaches its shell with -b only (test_e2e_slurm_signals has the steps' side)."""
    jid = melon.submit("-t", "1:00", "--wrap", "trap 'echo got-usr2 >> sig.txt' USR2; while :; do sleep 0.1; done")
    melon.wait_state(jid, {"R"})
    import time
    time.sleep(1)
    r = _run(melon, slurm_env, "scancel", str(jid), "--signal", "USR2")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    time.sleep(1)
    assert not (melon.work / "sig.txt").exists()
    r = _run(melon, slurm_env, "scancel", str(jid), "--signal", "usr2", "-b")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    wait_for(lambda: (melon.work / "sig.txt").exists(), what="USR2 to reach the batch shell")
    assert melon.job(jid)["state"] == "R"
    r = _run(melon, slurm_env, "scancel", "--signal=SIGTERM", "--full", str(jid))
    assert r.returncode == 0
    assert melon.wait_state(jid, {"CD", "F", "CA"})["state"] in ("F", "CD")


def test_scancel_quiet_verbose_and_signal_forms_as_slurms(melon: Melon, slurm_env: dict) -> None:
    """The messages of src/scancel/scancel.c: verbose() lines `scancel: Terminating job N` and
    `scancel: Signal N to [batch |full ]job N`; with a signal an id that names no active job is
    `Kill job error on job id N: Invalid job id specified`, exit 1, said unless -Q; a plain
    cancel of one is silent and exit 0, said with -v. Signals as sig_name2num reads them."""
    scancel = lambda *args: _run(melon, slurm_env, "scancel", *args)  # noqa: E731
    gone = "987654"
    invalid = f"scancel: error: Kill job error on job id {gone}: Invalid job id specified\n"
    assert (scancel(gone).returncode, scancel(gone).stderr) == (0, "")
    r = scancel("-v", gone)
    assert (r.returncode, r.stderr) == (0, f"scancel: Terminating job {gone}\n" + invalid)
    r = scancel("--signal=USR1", gone)
    assert (r.returncode, r.stdout, r.stderr) == (1, "", invalid)
    r = scancel("-Q", "-s", "USR1", gone)
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "")
    for bad in ("WINCH", "SIGNOPE", "0"):  # not in scancel's table (proc_args.c signals_mapping[])
        r = scancel("-s", bad, gone)
        assert (r.returncode, r.stderr) == (1, f"Unknown job signal: {bad}\n")
    held = melon.submit("-H", "--wrap", "true")
    r = scancel("-v", "-s", "10", str(held))  # a pending job takes KILL only (job_signal in slurmctld)
    assert (r.returncode, r.stderr) == (1, f"scancel: Signal 10 to job {held}\nscancel: error: Kill job error on "
                                           f"job id {held}: Job can not be altered now, try again later\n")
    r = scancel("--verbose", "--batch", str(held))  # KILL to a pending job cancels it
    assert (r.returncode, r.stderr) == (0, f"scancel: Terminating batch job {held}\n")
    assert melon.job(held)["state"] == "CA"
    run = melon.submit("-t", "1:00", "--wrap", "sleep 60")
    melon.wait_state(run, {"R"})
    r = scancel("-v", "-f", "-s", "SIGCONT", str(run))
    assert (r.returncode, r.stderr) == (0, f"scancel: Signal 18 to full job {run}\n")
    r = scancel("-v", "-n", "no-such-name")
    assert (r.returncode, r.stderr) == (0, "scancel: error: No active jobs match ALL job filters, including: "
                                           "job_name=no-such-name \n")
    r = scancel("-v", "-s", "KILL", str(run))  # KILL ends the whole job
    assert (r.returncode, r.stderr) == (0, f"scancel: Signal 9 to job {run}\n")
    assert melon.wait_state(run, {"CD", "F", "CA"})["state"] == "CA"  # a cancel, at once, as Slurm's job_signal


def test_sacct_as_the_tools_run_it(melon: Melon, slurm_env: dict) -> None:
    ok = melon.submit("-J", "ok", "--wrap", "true")
    bad = melon.submit("-J", "bad", "--wrap", "exit 2")
    held = melon.submit("-H", "--wrap", "true")
    for jid in (ok, bad):
        melon.wait_state(jid, {"CD", "F"})
    melon.run("mcancel", str(held))
    sacct = lambda *args: _run(melon, slurm_env, "sacct", *args)  # noqa: E731
    # submitit: a header it reads the column names from, one -j per id
    assert sacct("-o", "JobID,State,NodeList", "--parsable2", "-j", str(ok), "-j", str(bad)).stdout == \
        f"JobID|State|NodeList\n{ok}|COMPLETED|local\n{ok}.batch|COMPLETED|local\n{bad}|FAILED|local\n" \
        f"{bad}.batch|FAILED|local\n"
    # snakemake: no header, raw ids, comma list, -X, --clusters
    assert sacct("-X", "--parsable2", "--clusters", "all", "--noheader", "--format=JobIdRaw,State",
                 "-j", f"{ok},{held}").stdout == f"{ok}|COMPLETED\n{held}|CANCELLED\n"
    # the legacy profile: -P -b
    assert sacct("-P", "-b", "-j", str(bad), "-n").stdout == f"{bad}|FAILED|2:0\n{bad}.batch|FAILED|2:0\n"
    # snakemake's account probe, run without a shell: `|`, `tail` and `-1` arrive as arguments, and
    # `-1` is an invalid option, as in Slurm; snakemake takes the failure for "no account"
    r = sacct("-nu", melon.job(ok)["user"], "-o", "Account%256", "|", "tail", "-1")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == "sacct: invalid option -- '1'\nTry \"sacct --help\" for more information\n"
    r = sacct("-nu", melon.job(ok)["user"], "-o", "Account%256")
    assert r.returncode == 0 and r.stdout.strip() == ""
    r = sacct("-X", "|", "tail")  # src/sacct/options.c: error("Unknown arguments:"), then each
    assert (r.returncode, r.stderr) == (1, "sacct: error: Unknown arguments:\nsacct: error:  |\nsacct: error:  tail\n")
    r = sacct("-j", f"{ok}.batch", "-P", "--format=JobID,State", "--noheader")  # a step's row alone
    assert (r.returncode, r.stdout) == (0, f"{ok}.batch|COMPLETED\n")
    assert sacct("-X").returncode == 0
    assert sacct("--name=bad", "-P", "-n", "-o", "jobid,state").stdout == f"{bad}|FAILED\n{bad}.batch|FAILED\n"
    lines = sacct("-o", "JobID%-20,State", "-j", str(ok)).stdout.splitlines()
    assert lines[2] == f"{ok}".ljust(20) + " " + "COMPLETED".rjust(10)


def test_sacct_long_and_units_as_slurms(melon: Melon, slurm_env: dict) -> None:
    """-l is sacct.h's LONG_FIELDS, each at sacct.c's width; a job's own line leaves its steps'
    statistics empty (print.c), its CPU frequencies "Unknown". --units converts the sizes
    (ReqMem, MaxRSS, the TRES) through convert_num_unit, --noconvert keeps them in MB."""
    from melon_cli.acct_format import LONG
    jid = melon.submit("-J", "sized", "--mem", "1536", "-c", "1", "--wrap", "true")
    melon.wait_state(jid, {"CD"})
    sacct = lambda *args: _run(melon, slurm_env, "sacct", "-j", str(jid), *args)  # noqa: E731
    out = sacct("-l").stdout.splitlines()
    assert out[0].startswith("JobID        JobIDRaw        JobName  Partition  MaxVMSize  MaxVMSizeNode  "
                             "MaxVMSizeTask  AveVMSize     MaxRSS MaxRSSNode MaxRSSTask     AveRSS MaxPages "
                             "MaxPagesNode   MaxPagesTask ")
    assert out[1].startswith("------------ ------------ ---------- ---------- ---------- -------------- ")
    rows = sacct("-l", "-P", "-n", "-X").stdout.splitlines()
    assert len(rows) == 1
    row = dict(zip(LONG.split(","), rows[0].split("|")))
    assert (row["JobID"], row["JobIDRaw"], row["JobName"], row["State"], row["ExitCode"], row["ReqMem"]) == \
        (str(jid), str(jid), "sized", "COMPLETED", "0:0", "1.50G")
    assert (row["ReqCPUFreqMin"], row["ConsumedEnergy"], row["AveRSS"], row["NTasks"]) == ("Unknown", "0", "", "")
    assert row["ReqTRES"] == row["AllocTRES"] == "billing=1,cpu=1,mem=1.50G,node=1"
    assert sacct("-X", "-P", "-n", "-o", "ReqMem,ReqTRES", "--units=M").stdout == "1536M|billing=1,cpu=1,mem=1536M,node=1\n"
    assert sacct("-X", "-P", "-n", "-o", "ReqMem", "--units=k").stdout == "1572864K\n"
    assert sacct("-X", "-P", "-n", "-o", "ReqMem", "--noconvert").stdout == "1536M\n"
    r = sacct("--units=X")
    assert (r.returncode, r.stderr) == (1, "sacct: error: Invalid unit type 'X'. Possible options are 'KMGTP'\n"
                                           "sacct: fatal: Invalid unit type\n")
    header = _run(melon, slurm_env, "sacct", "-j", str(jid)).stdout.splitlines()[0]  # sacct.h DEFAULT_FIELDS
    assert header.split() == ["JobID", "JobName", "Partition", "Account", "AllocCPUS", "State", "ExitCode"]


def test_scontrol_extends_a_job_for_its_owner(melon: Melon, slurm_env: dict) -> None:
    jid = melon.submit("-t", "2", "--wrap", "sleep 30")
    melon.wait_state(jid, {"R"})
    scontrol = lambda *args: _run(melon, slurm_env, "scontrol", *args)  # noqa: E731
    r = scontrol("update", f"JobId={jid}", "TimeLimit=+10")  # what Slurm allows only its administrators
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert melon.job(jid)["time_limit_seconds"] == 12 * 60
    assert scontrol("update", f"jobid={jid}", "timelimit=1:00:00").returncode == 0
    assert melon.job(jid)["time_limit_seconds"] == 3600
    shown = scontrol("show", "job", str(jid)).stdout
    assert shown.startswith(f"JobId={jid} JobName=wrap\n   UserId=") and "JobState=RUNNING" in shown
    assert "TimeLimit=01:00:00" in shown and "ExitCode=0:0" in shown
    assert "\n" not in scontrol("-o", "show", "job", str(jid)).stdout.strip()
    for args, says in ((["update", f"JobId={jid}", "TimeLimit=-5"], "give the new total"),
                       (["update", "JobId=987654", "TimeLimit=+5"], "does not exist"),
                       (["hold", str(jid)], "only pending jobs"), (["frobnicate"], "not something")):
        r = scontrol(*args)
        assert r.returncode == 1 and says in r.stderr, (args, r.stderr)
    assert melon.job(jid)["time_limit_seconds"] == 3600
    melon.run("mcancel", str(jid))


def test_scontrol_hold_release_and_hostnames(melon: Melon, slurm_env: dict) -> None:
    jid = melon.submit("-H", "--wrap", "true")
    assert _run(melon, slurm_env, "scontrol", "release", str(jid)).returncode == 0
    melon.wait_state(jid, {"CD"})
    out = _run(melon, slurm_env, "scontrol", "show", "hostnames", "node[1-3],gpu01").stdout
    assert out == "node1\nnode2\nnode3\ngpu01\n"
    env = {**slurm_env, "SLURM_JOB_NODELIST": "n[07-08]"}
    assert _run(melon, env, "scontrol", "show", "hostnames").stdout == "n07\nn08\n"


def test_sinfo_default_node_and_summary_views(melon_factory) -> None:
    melon = melon_factory(inventory='[partitions.short]\ndefault = true\nmax_time = "4:00:00"\n'
                                    '[partitions.long]\nmax_time = "2-00:00:00"\n')
    env = slurm_names_env(melon)
    out = _run(melon, env, "sinfo").stdout.splitlines()
    assert out[0] == "PARTITION AVAIL  TIMELIMIT  NODES  STATE NODELIST"
    assert out[1].split() == ["short*", "up", "4:00:00", "1", "idle", "local"]
    # `long` has no nodes: sinfo still lists a partition the format shows (sinfo.c _build_sinfo_data)
    assert out[2] == "long         up 2-00:00:00      0    n/a " and len(out) == 3
    assert _run(melon, env, "sinfo", "-h", "-o", "%P|%l|%c", "-p", "short").stdout.split("|")[:2] == \
        ["short*", "4:00:00"]
    assert _run(melon, env, "sinfo", "-N", "-h").stdout.split() == ["local", "1", "short*", "idle"]
    assert _run(melon, env, "sinfo", "-s", "-h").stdout.split()[3] == "0/1/0/1"
    jid = melon.submit("-t", "1:00", "--wrap", "sleep 30")
    melon.wait_state(jid, {"R"})
    assert _run(melon, env, "sinfo", "-h", "-o", "%t", "-p", "short").stdout.strip() in ("mix", "alloc")
    melon.run("mcancel", str(jid))
    r = _run(melon, env, "sinfo", "-o", "%P %q", "-p", "short")  # opts.c: warned, printed as typed, not fatal
    assert (r.returncode, r.stdout, r.stderr) == (0, "PARTITION %q\nshort* %q\n",
                                                  "Invalid node format specification: q\n")


def _node(melon: Melon) -> dict:
    return next(n for n in json.loads(melon.run("minfo", "--json").stdout) if n["name"] == "local")


def test_sinfo_format_fields_by_name_with_slurms_widths(melon_factory) -> None:
    """-O as src/sinfo/opts.c reads it: names in any case, 20 columns left-justified unless
    `:[.]SIZE` says otherwise, the text after the size printed after the field; fields as
    print.c prints them. myqueue's `sinfo --noheader -O CPUs,Memory,Partition` is the first."""
    melon = melon_factory(inventory='[partitions.short]\ndefault = true\nmax_time = "4:00:00"\n'
                                    '[partitions.long]\nmax_time = "2-00:00:00"\n')
    env = slurm_names_env(melon)
    node = _node(melon)
    cpus, mem = str(node["cpus"]), str(node["memory"])
    col = lambda *texts: "".join(t.ljust(20) for t in texts)  # noqa: E731  (name alone: 20, left)
    assert _run(melon, env, "sinfo", "--noheader", "-O", "CPUs,Memory,Partition").stdout == \
        col(cpus, mem, "short*") + "\n" + col("0", "0", "long") + "\n"
    out = _run(melon, env, "sinfo", "-O", "partitionname,NodeList,NodeHost,StateCompact,StateLong,Gres,Nodes",
               "-p", "short").stdout
    assert out == col("PARTITION", "NODELIST", "HOSTNAMES", "STATE", "STATE", "GRES", "NODES") + "\n" + \
        col("short", "local", "local", "idle", "idle", "(null)", "1") + "\n"
    out = _run(melon, env, "sinfo", "-O", "NodeAI:.6,NodeAIOT:9 ,Time:.10,TIMELIMIT,Available:0|,CPUsState,"
               "AllocMem:.9,FreeMem:.9,Features:8").stdout.splitlines()
    # Slurm's sinfo has no TimeLimit field (it is Time): its error, and the column shows only its suffix
    # print.c _print_str: `.6` right-justifies and cuts to 6, `9 ` is 9 left then a space, `0` is
    # the text alone; a title is cut like a value
    assert out == ["NODES(" + "NODES(A/I" + " " + " TIMELIMIT" + "AVAIL|" + "CPUS(A/I/O/T)".ljust(20) + " ALLOCMEM"
                   + " FREE_MEM" + "AVAIL_FE",
                   "   0/1" + "0/1/0/1  " + " " + "   4:00:00" + "up|" + f"0/{cpus}/0/{cpus}".ljust(20) + "        0"
                   + "      N/A" + "(null)  "]
    r = _run(melon, env, "sinfo", "-O", "TimeLimit")
    assert r.stderr == "sinfo: error: Invalid job format specification: TimeLimit\n"


def test_sinfo_long_views_start_with_the_date(melon: Melon, slurm_env: dict) -> None:
    """-l and -N -l: the layouts of opts.c, the partition and node-list columns as wide as the
    data (print.c _set_part_field_size, at least 9), and print_date()'s line first (not with -h)."""
    import re
    node = _node(melon)
    out = _run(melon, slurm_env, "sinfo", "-l").stdout.splitlines()
    assert re.fullmatch(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d \d{4}", out[0]), out[0]
    assert out[1:] == ["PARTITION AVAIL  TIMELIMIT   JOB_SIZE ROOT OVERSUBS     GROUPS  NODES       STATE "
                       "RESERVATION NODELIST",
                       "local*       up   infinite          1   no       NO        all      1        idle "
                       "            local"]
    out = _run(melon, slurm_env, "sinfo", "-N", "--long").stdout.splitlines()
    assert re.fullmatch(r"\w{3} \w{3} \d\d \d\d:\d\d:\d\d \d{4}", out[0])
    cpus, mem = str(node["cpus"]), str(node["memory"])
    assert out[1:] == ["NODELIST   NODES PARTITION       STATE CPUS    S:C:T MEMORY TMP_DISK WEIGHT AVAIL_FE REASON    "
                       "          ",
                       "local          1    local*        idle " + cpus.ljust(4) + f" {cpus}:1:1".rjust(9)
                       + mem.rjust(7) + "        0      1   (null) none                "]
    assert _run(melon, slurm_env, "sinfo", "-l", "-h").stdout.startswith("local*")
    r = _run(melon, slurm_env, "sinfo", "-l", "-o", "%P")
    assert (r.returncode, r.stderr) == (1, "sinfo: fatal: Options -o(--format) and -l(--long) are mutually "
                                           "exclusive. Please remove one and retry.\n")


# ---------------------------------------------------------------- sbatch


def _count_jobs(melon: Melon) -> int:
    return len(melon.jobs("--all"))


def test_sbatch_a_file_prints_exactly_what_tools_parse_and_reads_it_at_once(melon: Melon, slurm_env: dict) -> None:
    """submitit's script, as it writes it: plain `sbatch FILE`, the file moved away right after."""
    (melon.work / "logs").mkdir()
    (melon.work / "job.sh").write_text(
        "#!/bin/bash\n\n# Parameters\n#SBATCH --error=logs/%j_0_log.err\n#SBATCH --job-name=submitit\n"
        "#SBATCH --nodes=1\n#SBATCH --open-mode=append\n#SBATCH --output=logs/%j_0_log.out\n"
        "#SBATCH --signal=USR2@90\n#SBATCH --time=5\n#SBATCH --wckey=submitit\n#SBATCH --account=proj7\n\n"
        "# command\necho \"ran $SLURM_JOB_ID as $SLURM_JOB_NAME in $PWD\"\n")
    r = _run(melon, slurm_env, "sbatch", "job.sh")
    (melon.work / "job.sh").rename(melon.work / "moved.sh")  # submitit moves the file as soon as sbatch returns
    assert r.returncode == 0 and r.stderr == "" and r.stdout.startswith("Submitted batch job ")
    jid = int(r.stdout.split(" ")[3])  # simple_slurm's parse; Parsl anchors at the line start
    assert r.stdout == f"Submitted batch job {jid}\n"
    job = melon.wait_state(jid, {"CD"})
    assert job["name"] == "submitit" and job["time_limit_seconds"] == 300
    assert (melon.work / f"logs/{jid}_0_log.out").read_text() == f"ran {jid} as submitit in {melon.work}\n"
    acct = _run(melon, slurm_env, "sacct", "-P", "-n", "-j", str(jid), "-o", "JobID,Account,State").stdout
    assert acct == f"{jid}|proj7|COMPLETED\n{jid}.batch|proj7|COMPLETED\n"  # submitit reads the job's own row


def test_sbatch_reads_stdin_and_dev_stdin_and_takes_snakemakes_command_line(melon: Melon, slurm_env: dict) -> None:
    """batchspawner and simple_slurm pipe the script in; snakemake gives /dev/stdin and --parsable."""
    r = subprocess.run(["sbatch", "--parsable"], input="#!/bin/sh\necho from stdin\n", capture_output=True,
                       text=True, env=slurm_env, cwd=melon.work, timeout=60)
    assert r.returncode == 0 and r.stderr == "" and r.stdout.strip().isdigit()
    jid = int(r.stdout)
    assert melon.wait_state(jid, {"CD"})["name"] == "sbatch"
    assert (melon.work / f"slurm-{jid}.out").read_text() == "from stdin\n"
    (melon.work / "wd").mkdir()
    args = ["sbatch", "--parsable", "--job-name", "run-uuid", "--output", f"{melon.work}/%j.log", "--export=ALL",
            "--comment", "rule_a_wildcards_x", "-A", "acct", "-p", "local", "-t", "5", "--mem", "100",
            "--cpus-per-task=1", "--nodes=1", "--ntasks=1", "--qos=normal", "-D", f"{melon.work}/wd", "/dev/stdin"]
    r = subprocess.run(args, input="#!/bin/sh\npwd\n", capture_output=True, text=True, env=slurm_env,
                       cwd=melon.work, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    jid = int(r.stdout.strip().split(";")[0])
    melon.wait_state(jid, {"CD"})
    assert (melon.work / f"{jid}.log").read_text() == f"{melon.work}/wd\n"
    out = _run(melon, slurm_env, "sacct", "--name=run-uuid", "--parsable2", "--noheader",
               "--format=JobID,JobName,Comment,NCPUS,ReqMem").stdout
    assert out == f"{jid}|run-uuid|rule_a_wildcards_x|1|100M\n{jid}.batch|batch|rule_a_wildcards_x|1|100M\n"


def test_sbatch_and_mbatch_take_parsable_and_wait_from_the_script(melon: Melon, slurm_env: dict) -> None:
    """sbatch reads a script's directives with its whole option table (_opt_batch_script in
    src/sbatch/opt.c): `#SBATCH --parsable` prints the bare id, `#SBATCH --wait` waits and exits with
    the job's code; `#SBATCH --quiet` belongs to its early pass and is ignored there."""
    (melon.work / "p.sh").write_text("#!/bin/sh\n#SBATCH --parsable\n#SBATCH --quiet --constraint=bigmem\ntrue\n")
    r = _run(melon, slurm_env, "sbatch", "p.sh")
    assert r.returncode == 0 and r.stdout.strip().isdigit() and r.stdout == f"{int(r.stdout)}\n"
    assert r.stderr == "sbatch: warning: line 3: --constraint=bigmem ignored: not supported by Melon\n"
    (melon.work / "w.sh").write_text("#!/bin/sh\n#SBATCH -W\nsleep 1; exit 3\n")
    r = _run(melon, slurm_env, "sbatch", "w.sh")
    jid = int(r.stdout.split()[-1])
    assert (r.returncode, r.stdout) == (3, f"Submitted batch job {jid}\n")
    assert melon.job(jid)["state"] == "F"
    r = _run(melon, slurm_env, "mbatch", "p.sh")
    assert r.returncode == 0 and r.stdout == f"{int(r.stdout)}\n"


def test_sbatch_wrap_as_toil_and_cromwell_give_it(melon: Melon, slurm_env: dict) -> None:
    r = _run(melon, slurm_env, "sbatch", "-J", "toil_job_1_x", "--signal=B:INT@30", "--time=0:3600",
             "-o", "toil-%j.out", "-e", "toil-%j.err", "--wrap=exec sh -c 'echo hello; echo oops >&2'")
    assert r.returncode == 0 and r.stderr == ""
    jid = int(r.stdout.strip().split()[-1])  # Toil's parse
    job = melon.wait_state(jid, {"CD"})
    assert job["time_limit_seconds"] == 3600
    assert (melon.work / f"toil-{jid}.out").read_text() == "hello\n"
    assert (melon.work / f"toil-{jid}.err").read_text() == "oops\n"
    r = _run(melon, slurm_env, "sbatch", "-J", "cromwell_x", "-D", str(melon.work), "-t", "2", "-p", "local",
             "-c", "1", "--mem-per-cpu=64", "--wrap", "/bin/sh -c 'exit 3'")
    jid = int(r.stdout.split()[-1])
    assert melon.wait_state(jid, {"F"})["exit_code"] == 3
    assert (melon.work / f"slurm-{jid}.out").exists()  # Slurm's default output name


def test_sbatch_warns_only_where_an_option_it_skips_changes_the_job(melon: Melon, slurm_env: dict) -> None:
    r = _run(melon, slurm_env, "sbatch", "--nodes=1", "--constraint=bigmem", "--hint=compute_bound", "-H", "--wrap",
             "true")
    assert r.returncode == 0 and r.stdout.startswith("Submitted batch job ")
    assert r.stderr.splitlines() == [
        "sbatch: warning: --constraint=bigmem ignored: not supported by Melon",
        "sbatch: warning: --hint=compute_bound ignored: not supported by Melon"]
    r = _run(melon, slurm_env, "sbatch", "-Q", "--constraint=bigmem", "-H", "--wrap", "true")  # --quiet: no warnings
    assert r.returncode == 0 and r.stderr == ""


@pytest.mark.parametrize(("args", "stdin", "stderr"), [
    (["--bogus", "x.sh"], None, "sbatch: unrecognized option '--bogus'\nTry \"sbatch --help\" for more information\n"),
    (["-t"], None, "sbatch: option requires an argument -- 't'\nTry \"sbatch --help\" for more information\n"),
    (["--n=1", "x.sh"], None, "sbatch: option '--n=1' is ambiguous; possibilities:"),
    (["missing.sh"], None, "sbatch: error: Unable to open file missing.sh\n"),
    ([], "echo no interpreter\n", "sbatch: error: This does not look like a batch script."),
    (["-p", "nosuch", "--wrap", "true"], None, "sbatch: error: Batch job submission failed: unknown partition"),
    (["-t", "soon", "--wrap", "true"], None, "sbatch: error: "),
    (["--wrap", "true", "extra"], None, "sbatch: error: Script arguments not permitted with --wrap option\n"),
])
def test_sbatch_refuses_in_slurms_words_and_submits_nothing(melon: Melon, slurm_env: dict, args: list[str],
                                                             stdin: str | None, stderr: str) -> None:
    before = _count_jobs(melon)
    r = subprocess.run(["sbatch", *args], input=stdin or "", capture_output=True, text=True, env=slurm_env,
                       cwd=melon.work, timeout=60)
    assert r.returncode == 1 and r.stdout == "" and r.stderr.startswith(stderr), r.stderr
    assert _count_jobs(melon) == before


# ---------------------------------------------------------------- srun, and the job's SLURM_* variables


SLURM_SCRIPT = """#!/bin/bash
#SBATCH -J vars -c 2 --array=0-2:2 -o out-%A_%a.txt
echo "host=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1) nodes=$SLURM_JOB_NUM_NODES"
echo "job=$SLURM_JOB_ID array=$SLURM_ARRAY_JOB_ID task=$SLURM_ARRAY_TASK_ID min=$SLURM_ARRAY_TASK_MIN \\
max=$SLURM_ARRAY_TASK_MAX cpus=$SLURM_CPUS_PER_TASK name=$SLURM_JOB_NAME dir=$SLURM_SUBMIT_DIR"
srun --unbuffered --output step-%A_%a_%t.out --error step-%A_%a_%t.err -n 2 --nodes=1 \\
  sh -c 'echo "proc=$SLURM_PROCID of $SLURM_NTASKS step=$SLURM_STEP_ID"; echo "e$SLURM_PROCID" >&2'
srun -l -n 2 --cpu-bind=q --mpi=none sh -c 'echo hi'
srun sh -c 'exit 3'
echo "rc=$?"
"""


def test_a_slurm_script_with_srun_and_scontrol_runs_unchanged(melon: Melon, slurm_env: dict) -> None:
    (melon.work / "vars.sh").write_text(SLURM_SCRIPT)
    r = _run(melon, slurm_env, "sbatch", "vars.sh")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    first = int(r.stdout.split()[-1])
    wait_for(lambda: {j["state"] for j in melon.jobs("--all", "-r", "-j", str(first))} == {"CD"}, timeout=60,
             what="both tasks to complete")
    tasks = {j["array_task_id"]: j["id"] for j in melon.jobs("--all", "-r", "-j", str(first))}
    assert sorted(tasks) == [0, 2]
    for task, jid in tasks.items():
        lines = (melon.work / f"out-{first}_{task}.txt").read_text().splitlines()
        host = lines[0].split()[0].split("=")[1]
        assert lines[0] == f"host={host} nodes=1" and host
        assert lines[1] == (f"job={jid} array={first} task={task} min=0 max=2 cpus=2 name=vars "
                            f"dir={melon.work}")
        assert sorted(lines[2:4]) == ["0: hi", "1: hi"]
        assert lines[4] == f"srun: error: {host}: task 0: Exited with exit code 3"
        assert lines[5] == "rc=3"
        for t in (0, 1):
            assert (melon.work / f"step-{first}_{task}_{t}.out").read_text() == f"proc={t} of 2 step=0\n"
            assert (melon.work / f"step-{first}_{task}_{t}.err").read_text() == f"e{t}\n"


@pytest.mark.parametrize(("directive", "tasks", "shown"), [
    ("", 1, ""), ("#SBATCH -n 2", 2, "--ntasks=2"), ("#SBATCH --ntasks-per-node=2", 2, "--ntasks-per-node=2")])
def test_srun_without_n_runs_the_jobs_task_count(melon: Melon, slurm_env: dict, directive: str, tasks: int,
                                                 shown: str) -> None:
    """srun reads SLURM_NTASKS (and SLURM_NPROCS) as its -n (env_vars[] in src/srun/opt.c); the
    batch job's is sbatch's -n, else --ntasks-per-node times its nodes (env_array_for_batch_job in
    src/common/env.c). -n still wins."""
    (melon.work / "t.sh").write_text(f"#!/bin/sh\n{directive}\n#SBATCH -o tasks-%j.out\necho ntasks=$SLURM_NTASKS\n"
                                     "srun sh -c 'echo task $SLURM_PROCID of $SLURM_NTASKS'\n"
                                     "srun -n 1 sh -c 'echo one: $SLURM_NTASKS'\n")
    r = _run(melon, slurm_env, "sbatch", "--parsable", "t.sh")
    jid = int(r.stdout)
    assert r.stderr == ""  # acted on: the job holds a CPU for each task
    melon.wait_state(jid, {"CD"})
    lines = (melon.work / f"tasks-{jid}.out").read_text().splitlines()
    assert lines[0] == f"ntasks={tasks}" and lines[-1] == "one: 1"
    assert sorted(lines[1:-1]) == [f"task {t} of {tasks}" for t in range(tasks)]


def test_srun_outside_a_job_submits_it_streams_its_output_and_exits_with_its_code(melon: Melon,
                                                                                  slurm_env: dict) -> None:
    r = _run(melon, slurm_env, "srun", "-J", "direct", "-t", "1", "-c", "1",
             "sh", "-c", "echo out; sleep 0.3; echo err >&2; echo $SLURM_JOB_NAME; exit 4")
    assert r.returncode == 4 and r.stdout == "out\ndirect\n"
    assert r.stderr.splitlines()[0] == "err" and r.stderr.splitlines()[-1].endswith("task 0: Exited with exit code 4")
    job = [j for j in melon.jobs("--all") if j["name"] == "direct"]
    assert job and job[0]["state"] == "F"
    assert not list(melon.work.glob(".srun-*"))  # its spool is gone
    r = _run(melon, slurm_env, "srun", "-n", "2", "-l", "sh", "-c", "echo $SLURM_PROCID")
    assert r.returncode == 0 and sorted(r.stdout.splitlines()) == ["0: 0", "1: 1"], r.stderr


def test_srun_refuses_what_the_partition_cannot_hold(melon: Melon, slurm_env: dict) -> None:
    r = _run(melon, slurm_env, "srun", "-N", "2", "true")
    assert r.returncode == 1 and "Unable to allocate resources: -N 2 needs 2 nodes, and partition" in r.stderr, r.stderr
    r = _run(melon, slurm_env, "srun")
    assert r.returncode == 1 and "No command given to execute" in r.stderr
    r = _run(melon, slurm_env, "srun", "--frobnicate", "true")
    assert r.returncode == 1 and r.stderr.startswith("srun: unrecognized option '--frobnicate'")


# ---------------------------------------------------------------- scontrol requeue and show


REQUEUES_ITSELF = """#!/bin/bash
#SBATCH -J self-requeue -o requeue-%j.out --open-mode=append
echo "run $SLURM_RESTART_COUNT of job $SLURM_JOB_ID"
if [ "$SLURM_RESTART_COUNT" = 0 ]; then
  trap '' TERM  # as submitit does: it has checkpointed, and lets the kill come
  scontrol requeue "$SLURM_JOB_ID"
  sleep 30
fi
echo "done"
"""


def test_scontrol_requeue_from_inside_the_job_reruns_it_under_its_own_id(melon: Melon, slurm_env: dict) -> None:
    """What submitit and PyTorch Lightning do on their warning signal."""
    (melon.work / "requeue.sh").write_text(REQUEUES_ITSELF)
    jid = int(_run(melon, slurm_env, "sbatch", "--parsable", "requeue.sh").stdout)
    job = melon.wait_state(jid, {"CD", "F", "CA"}, timeout=60)
    assert job["state"] == "CD" and job["restarts"] == 1
    lines = (melon.work / f"requeue-{jid}.out").read_text().splitlines()
    assert lines[0] == f"run 0 of job {jid}" and lines[2:] == [f"run 1 of job {jid}", "done"], lines
    assert lines[1].startswith(f"slurmstepd: error: *** JOB {jid} ON {socket.gethostname()} CANCELLED AT ")
    assert lines[1].endswith(" DUE TO JOB REQUEUE ***")
    shown = _run(melon, slurm_env, "scontrol", "show", "job", str(jid)).stdout
    assert "Restarts=1" in shown and "JobState=COMPLETED" in shown


def test_a_requeue_asked_survives_kill_9_of_melond(melon: Melon, slurm_env: dict) -> None:
    jid = int(_run(melon, slurm_env, "sbatch", "--parsable", "-o", "k9-%j.out", "--open-mode=append", "--wrap",
                   "echo run $SLURM_RESTART_COUNT; [ $SLURM_RESTART_COUNT = 1 ] && exit 0; trap '' TERM; sleep 30"
                   ).stdout)
    melon.wait_state(jid, {"R"})
    r = _run(melon, slurm_env, "scontrol", "requeue", str(jid))
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    melon.stop(signal.SIGKILL)  # before the run's end (the kill waits out KillWait) reaches it
    melon.start()
    job = melon.wait_state(jid, {"CD", "F", "CA"}, timeout=60)
    assert job["state"] == "CD" and job["restarts"] == 1
    lines = (melon.work / f"k9-{jid}.out").read_text().splitlines()
    assert lines[0] == "run 0" and lines[2] == "run 1" and len(lines) == 3, lines
    assert lines[1].endswith(" DUE TO JOB REQUEUE ***")  # the kill was sent once, whether before or after


def test_scontrol_requeue_of_an_ended_job_and_what_it_refuses(melon: Melon, slurm_env: dict) -> None:
    jid = melon.submit("-o", "again-%j.out", "--wrap", "echo ran $SLURM_RESTART_COUNT")
    melon.wait_state(jid, {"CD"})
    assert _run(melon, slurm_env, "scontrol", "requeue", str(jid)).returncode == 0
    wait_for(lambda: melon.job(jid)["restarts"] == 1 and melon.job(jid)["state"] == "CD", what="a second run")
    assert (melon.work / f"again-{jid}.out").read_text() == "ran 1\n"  # truncated, as Slurm's default
    held = melon.submit("-H", "--wrap", "true")
    r = _run(melon, slurm_env, "scontrol", "requeue", str(held), "987654")
    assert r.returncode == 1 and f"job {held} is pending" in r.stderr and "987654" in r.stderr
    assert melon.job(held)["state"] == "PD" and melon.job(held)["restarts"] == 0


def test_scontrol_show_config_partition_and_node(melon: Melon, slurm_env: dict) -> None:
    import re
    conf = _run(melon, slurm_env, "scontrol", "show", "config").stdout
    assert "\nMinJobAge               = 300 sec\n" in conf
    assert re.search(r"^(\d+)\s*([a-zA-Z]*)", conf.split("MinJobAge", 1)[1].split("=", 1)[1].strip()).groups() \
        == ("300", "sec")  # snakemake's parse
    assert int(re.search(r"MaxArraySize\s*=?\s*(\d+)", conf, re.I).group(1)) == 10001
    part = _run(melon, slurm_env, "scontrol", "show", "partition").stdout
    assert part.startswith("PartitionName=local\n   ") and "Default=YES" in part and "State=UP" in part
    one = _run(melon, slurm_env, "scontrol", "-o", "show", "partition", "local").stdout
    assert one.count("\n") == 1 and "Nodes=local" in one
    node = _run(melon, slurm_env, "scontrol", "show", "node").stdout
    assert node.startswith("NodeName=local ") and re.search(r"State=(IDLE|MIXED|ALLOCATED) ", node)
    r = _run(melon, slurm_env, "scontrol", "show", "partition", "nosuch")
    assert r.returncode == 1 and "Partition nosuch not found" in r.stderr


def test_squeue_long_format_names(melon: Melon, slurm_env: dict) -> None:
    jid = melon.submit("-H", "-J", "named", "--wrap", "true")
    out = _run(melon, slurm_env, "squeue", "-O", "jobid:8,statecompact:.4 |,name", "-j", str(jid)).stdout
    assert out == f"JOBID     ST |NAME\n{jid:<8}  PD |named\n"
    r = _run(melon, slurm_env, "squeue", "-O", "bogus")
    assert r.returncode == 1 and "unknown -O field 'bogus'" in r.stderr


def test_sacct_folds_an_arrays_pending_tasks_as_submitit_parses_them(melon: Melon, slurm_env: dict) -> None:
    import re
    arr = melon.submit("-H", "--array", "0-5%2", "--wrap", "true")
    melon.run("mrelease", f"{arr}_0")
    melon.run("mcancel", f"{arr}_5")
    wait_for(lambda: melon.jobs("--all", "-r", "-j", f"{arr}_0")[0]["state"] == "CD", what="task 0 to run")
    out = _run(melon, slurm_env, "sacct", "-o", "JobID,State,NodeList", "--parsable2", "-j", str(arr)).stdout
    rows = [line.split("|") for line in out.splitlines()[1:]]
    assert [r[:2] for r in rows] == [[f"{arr}_0", "COMPLETED"], [f"{arr}_0.batch", "COMPLETED"],
                                     [f"{arr}_[1-4%2]", "PENDING"], [f"{arr}_5", "CANCELLED"]]
    rows = [r for r in rows if "." not in r[0]]  # submitit skips the steps' rows
    m = re.fullmatch(r"(?P<main_id>\d+)_\[(?P<arrays>(\d+(-\d+)?(,)?)+)(\%\d+)?\]", rows[1][0])  # submitit's
    assert m and m["main_id"] == str(arr) and m["arrays"] == "1-4"
    melon.run("mcancel", str(arr))
