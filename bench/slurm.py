"""Slurm and Melon side by side, on this machine, in one run: the workloads users notice first.

Installs Debian's slurm-wlm and munge where missing (as root), runs munged, slurmctld and slurmd
on loopback in a throwaway directory with Slurm's high-throughput settings (64 CPUs declared,
batch_sched_delay=0, default_queue_depth=1000, bf_interval=1, bf_continue, max_rpc_cnt=150), and
a throwaway melond on its embedded local node; then runs each workload against both:

- one `sbatch`/`mbatch --parsable --wrap=true` process (median of 30);
- 1,000 such submissions through `xargs -P8`: submitted per second, and done per second from the
  first submission to the last job's end;
- a 1,000-task array of `true`, submit to all done;
- listing 2,000 pending array tasks (`squeue` / `mqueue`: both fold them to one line);
- one job's details (`scontrol show job` / `mshow`);
- an extension (`scontrol update TimeLimit=+10`, as root: Slurm lets only administrators / `mextend`);
- a step inside an allocation: `srun true`, 30 times in one job, each timed inside the job.

Each figure is printed for both with the ratio Melon/Slurm (times: lower is better; rates:
higher). Slurm's commands are C and start in ~5 ms, which no Python process can: the listing and
detail rows say so rather than hide it. Skips, saying why, where Slurm cannot run.
Usage: python bench/slurm.py
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import BIN, melond, skip, summary, table

SUBMISSIONS = 1000
ARRAY = 1000
PENDING = 2000
RUNS = 30
HTC = "batch_sched_delay=0,default_queue_depth=1000,bf_interval=1,bf_continue,max_rpc_cnt=150"


def ensure_packages() -> None:
    missing = [tool for tool in ("slurmctld", "slurmd", "sbatch", "munged") if shutil.which(tool) is None
               and not os.path.exists(f"/usr/sbin/{tool}")]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        skip("slurm", f"{', '.join(missing)} missing, and installing slurm-wlm and munge needs root and apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "slurm-wlm", "munge"]):
        if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            skip("slurm", f"`{' '.join(cmd)}` failed")


class Slurm:
    """munged, slurmctld and slurmd in `root`, reached through SLURM_CONF."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.host = socket.gethostname().split(".")[0]
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.procs: list[subprocess.Popen] = []

    def write_conf(self) -> None:
        for d in ("state", "spool", "log", "munge"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        r = self.root
        self.conf.write_text("\n".join([
            "ClusterName=melonbench", f"SlurmctldHost={self.host}(127.0.0.1)",
            "SlurmUser=root", "SlurmdUser=root", "AuthType=auth/munge", "CryptoType=crypto/munge",
            f"StateSaveLocation={r}/state", f"SlurmdSpoolDir={r}/spool",
            f"SlurmctldPidFile={r}/slurmctld.pid", f"SlurmdPidFile={r}/slurmd.pid",
            f"SlurmctldLogFile={r}/log/slurmctld.log", f"SlurmdLogFile={r}/log/slurmd.log",
            "SlurmctldPort=16817", "SlurmdPort=16818",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none",
            "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
            "SchedulerType=sched/backfill", "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
            f"SchedulerParameters={HTC}", "SlurmdParameters=config_overrides", "ReturnToService=2",
            "MaxJobCount=100000", "MaxArraySize=100001", "MinJobAge=2", "KillWait=1", "InactiveLimit=0",
            "SlurmctldDebug=error", "SlurmdDebug=error",
            f"NodeName={self.host} NodeAddr=127.0.0.1 CPUs=64 RealMemory=16000 State=UNKNOWN",
            f"PartitionName=bench Nodes={self.host} Default=YES MaxTime=INFINITE State=UP",
        ]) + "\n")

    def start(self) -> None:
        self.write_conf()
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        sock = self.root / "munge" / "munge.socket"
        self.env["MUNGE_SOCKET"] = str(sock)  # not read by Slurm: the socket path is set below
        munged = shutil.which("munged") or "/usr/sbin/munged"
        self.procs.append(subprocess.Popen(
            [munged, "--foreground", "--force", f"--key-file={key}", f"--socket={sock}",
             f"--pid-file={self.root}/munge/munged.pid", f"--seed-file={self.root}/munge/seed",
             f"--log-file={self.root}/log/munged.log"], stderr=subprocess.DEVNULL))
        with self.conf.open("a") as f:
            f.write(f"AuthInfo=socket={sock}\n")
        time.sleep(0.5)
        ctld = shutil.which("slurmctld") or "/usr/sbin/slurmctld"
        slurmd = shutil.which("slurmd") or "/usr/sbin/slurmd"
        self.procs.append(subprocess.Popen([ctld, "-D", "-i"], env=self.env, stderr=subprocess.DEVNULL))
        self.procs.append(subprocess.Popen([slurmd, "-D", "-N", self.host], env=self.env, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip() in ("idle", "mixed"):
                return
            time.sleep(0.5)
        logs = "".join((self.root / "log" / n).read_text()[-1500:] for n in ("slurmctld.log", "slurmd.log")
                       if (self.root / "log" / n).exists())
        self.stop()
        print(f"Slurm's logs end:\n{logs}")
        skip("slurm", "Slurm's node did not come up within 60 s; its logs above")

    def run(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True, check=True, **kw)

    def idle(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while self.run("squeue", "-h", "-o", "%i").stdout.strip():
            if time.monotonic() > deadline:
                raise RuntimeError("Slurm's queue did not drain")
            time.sleep(0.05)

    def stop(self) -> None:
        subprocess.run(["scancel", "--user=root"], env=self.env, capture_output=True)
        for p in reversed(self.procs):
            p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def per_process_ms(cmd: list[str], env: dict, cwd: Path, runs: int = RUNS) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
        out.append((time.perf_counter() - t) * 1000)
    return out


def submission_loop(submit: list[str], env: dict, cwd: Path, drained) -> tuple[float, float]:
    """`seq N | xargs -P8 -n1 submit`: (submitted per second, done per second)."""
    t = time.perf_counter()
    subprocess.run(["sh", "-c", f"seq {SUBMISSIONS} | xargs -P8 -I{{}} {' '.join(submit)} >/dev/null"],
                   env=env, cwd=cwd, check=True)
    submitted = time.perf_counter() - t
    drained()
    done = time.perf_counter() - t
    return SUBMISSIONS / submitted, SUBMISSIONS / done


def step_ms(submit: list[str], srun: str, env: dict, out: Path, drained) -> list[float]:
    """One job that runs `srun true` RUNS times, each timed from inside the job (ms)."""
    script = (f"for i in $(seq {RUNS}); do s=$(date +%s%N); {srun} true; e=$(date +%s%N); "
              f"echo $(( (e - s) / 1000 )); done > {out}")
    subprocess.run([*submit, "-o", "/dev/null", "-c", "1", "--wrap", script], env=env, cwd=out.parent, check=True,
                   stdout=subprocess.DEVNULL)
    drained()
    return [int(line) / 1000 for line in out.read_text().split()]


def slurm_names() -> Path:
    """Where `melon-slurm env` puts Melon's srun and the rest of Slurm's names."""
    line = subprocess.run([str(BIN / "melon-slurm"), "env"], capture_output=True, text=True, check=True).stdout
    return Path(line.split('"')[1].split(":")[0])


def python_cap() -> float:
    """Processes per second of a bare `python -I -c pass` through the same `xargs -P8`: the ceiling
    of any Python command's submission loop on this machine, whatever it does once started."""
    t = time.perf_counter()
    subprocess.run(["sh", "-c", f"seq {SUBMISSIONS} | xargs -P8 -I{{}} {sys.executable} -I -c pass"], check=True)
    return SUBMISSIONS / (time.perf_counter() - t)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def spread(ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=4)
    return f"{statistics.median(ms):.1f} ({q[0]:.1f}-{q[2]:.1f})"


def main() -> None:
    ensure_packages()
    root = Path(tempfile.mkdtemp(prefix="slurm-bench-", dir="/tmp"))
    os.chmod(root, 0o755)
    slurm = Slurm(root)
    slurm.start()
    version = slurm.run("sinfo", "--version").stdout.strip()
    work = root / "work"
    work.mkdir()
    rows = []
    try:
        with melond() as (client, state, _mwork, _proc):
            menv = {**os.environ, "MELON_API": f"unix:{state}/melond.sock"}
            b = str(BIN)

            def melon_drained() -> None:
                while client.call("GET", "/jobs", query={"fields": "id"})["jobs"]:
                    time.sleep(0.05)

            def add(what: str, slurm_value: float, melon_value: float, unit: str, higher_better: bool,
                    note: str = "") -> None:
                ratio = melon_value / slurm_value if slurm_value else float("inf")
                rows.append([what, f"{slurm_value:.1f} {unit}", f"{melon_value:.1f} {unit}",
                             f"{ratio:.2f}x {'(higher is better)' if higher_better else '(lower is better)'}", note])

            s_one = per_process_ms(["sbatch", "--parsable", "-o", "/dev/null", "--wrap=true"], slurm.env, work)
            m_one = per_process_ms([f"{b}/mbatch", "--parsable", "-o", "/dev/null", "--wrap=true"], menv, work)
            slurm.idle()
            melon_drained()
            add("one sbatch/mbatch process, median ms (IQR)", statistics.median(s_one), statistics.median(m_one), "ms",
                False, f"Slurm {spread(s_one)}, Melon {spread(m_one)}")

            s_sub, s_done = submission_loop(["sbatch", "--parsable", "-o", "/dev/null", "--wrap=true"], slurm.env,
                                            work, slurm.idle)
            m_sub, m_done = submission_loop([f"{b}/mbatch", "--parsable", "-o", "/dev/null", "--wrap=true"], menv,
                                            work, melon_drained)
            add(f"{SUBMISSIONS:,} submissions, xargs -P8: submitted", s_sub, m_sub, "/s", True,
                f"the most any Python command can reach here: {python_cap():.0f}/s (bare `python -I -c pass`)")
            add(f"{SUBMISSIONS:,} submissions, xargs -P8: submit to all done", s_done, m_done, "/s", True)

            s_arr = timed(lambda: (slurm.run("sbatch", "-o", "/dev/null", f"--array=1-{ARRAY}", "--wrap=true"),
                                   slurm.idle()))
            m_arr = timed(lambda: (subprocess.run([f"{b}/mbatch", "-o", "/dev/null", f"--array=1-{ARRAY}",
                                                   "--wrap=true"], env=menv, check=True, stdout=subprocess.DEVNULL),
                                   melon_drained()))
            add(f"{ARRAY:,}-task array, submit to all done", ARRAY / s_arr, ARRAY / m_arr, "jobs/s", True)

            sid = slurm.run("sbatch", "--parsable", "-H", "-t", "10", "-o", "/dev/null",
                            f"--array=1-{PENDING}", "--wrap=true").stdout.strip().split(";")[0]
            mid = subprocess.run([f"{b}/mbatch", "--parsable", "-H", "-t", "10", "-o", "/dev/null",
                                  f"--array=1-{PENDING}", "--wrap=true"], env=menv, check=True,
                                 capture_output=True, text=True).stdout.strip()
            s_list = per_process_ms(["squeue"], slurm.env, work)
            m_list = per_process_ms([f"{b}/mqueue"], menv, work)
            add(f"listing {PENDING:,} pending array tasks (squeue / mqueue)", statistics.median(s_list),
                statistics.median(m_list), "ms", False, "C vs Python start-up: Python's floor alone is ~14 ms")
            s_show = per_process_ms(["scontrol", "show", "job", f"{sid}_1"], slurm.env, work)
            m_show = per_process_ms([f"{b}/mshow", f"{mid}_1"], menv, work)
            add("one job's details (scontrol show job / mshow)", statistics.median(s_show), statistics.median(m_show),
                "ms", False, "as above")
            s_ext = per_process_ms(["scontrol", "update", f"JobId={sid}_2", "TimeLimit=+10"], slurm.env, work, 10)
            m_ext = per_process_ms([f"{b}/mextend", "-j", f"{mid}_2", "-t", "+10"], menv, work, 10)
            add("an extension (scontrol update TimeLimit=+10 as root / mextend as the user)",
                statistics.median(s_ext), statistics.median(m_ext), "ms", False, "Slurm: administrators only")
            slurm.run("scancel", sid)
            subprocess.run([f"{b}/mcancel", mid], env=menv, stdout=subprocess.DEVNULL)
            slurm.idle()
            melon_drained()
            s_step = step_ms(["sbatch", "--parsable"], "srun", slurm.env, work / "slurm-steps.txt", slurm.idle)
            m_step = step_ms([f"{b}/mbatch", "--parsable"], str(slurm_names() / "srun"), menv, work / "melon-steps.txt",
                             melon_drained)
            add(f"a step in an allocation (`srun true`, {RUNS} in one job)", statistics.median(s_step),
                statistics.median(m_step), "ms", False, f"Slurm {spread(s_step)}, Melon {spread(m_step)}")
    finally:
        slurm.stop()
        shutil.rmtree(root, ignore_errors=True)
    table(f"{version} and Melon side by side on this machine ({os.cpu_count()} cores), one run",
          ["workload", "Slurm", "Melon", "Melon/Slurm", "note"], rows)
    summary("slurm", f"{m_done / s_done:.2f}x Slurm's rate, {SUBMISSIONS:,} submissions to all done "
                     f"({ARRAY:,}-task array {s_arr / m_arr:.1f}x)")


if __name__ == "__main__":
    main()
