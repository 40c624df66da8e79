"""The tools that drive Slurm, from PyPI, unchanged, against Melon's Slurm commands on the local
node: submitit, dask-jobqueue and Parsl run their own code (tests/e2e/slurm_tools/); Nextflow
and Cromwell, which are not on PyPI, by their exact command lines and parse rules (SLURM-CLIENTS.md)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from conftest import Melon, slurm_names_env, wait_for

TOOLS = Path(__file__).parent / "slurm_tools"


def _tool(melon: Melon, script: str, *args: str, timeout: float = 150, env: dict | None = None) -> list[dict]:
    """Run one tool's script as its user would, and read the JSON lines it prints."""
    r = subprocess.run([sys.executable, str(TOOLS / script), *args], capture_output=True, text=True,
                       env=env or slurm_names_env(melon), cwd=melon.work, timeout=timeout)
    assert r.returncode == 0, f"{script} failed:\n{r.stdout}\n{r.stderr[-4000:]}"
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def test_submitit_maps_raises_and_cancels(melon: Melon) -> None:
    mapped, raised, cancelled = _tool(melon, "submitit_run.py", str(melon.work / "submitit"))
    assert mapped["map"] == [10, 20, 30]
    first = mapped["ids"][0].split("_")[0]
    assert mapped["ids"] == [f"{first}_0", f"{first}_1", f"{first}_2"]  # an array, as sbatch printed it
    assert raised["exception"] == "FailedJobError" and "ZeroDivisionError" in raised["text"]
    assert cancelled["cancelled"] == "CANCELLED" and cancelled["done"] is True
    assert melon.job(int(cancelled["id"]))["state"] == "CA"
    tasks = melon.jobs("--all", "-r", "-j", first)
    assert [t["state"] for t in tasks] == ["CD", "CD", "CD"]


# sbatch as a busy submit host runs it: it returns only once the job it submitted has ended, or
# a second after, whichever comes first. submitit makes a `%j` folder after sbatch returns (it
# learns the id from sbatch's output), so this puts the job's start before that folder exists,
# every time, where a fast host only makes it likely: melond starts a job milliseconds after
# accepting it. A second is the longest a job has to wait for its folder here.
LATE_SBATCH = """#!{python}
import subprocess, sys, time
r = subprocess.run([{sbatch!r}, *sys.argv[1:]], capture_output=True, text=True)
sys.stdout.write(r.stdout)
sys.stderr.write(r.stderr)
if r.returncode == 0:
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        state = subprocess.run([{squeue!r}, "-h", "-t", "all", "-j", r.stdout.split()[-1], "-o", "%t"],
                               capture_output=True, text=True).stdout.strip()
        if state not in ("", "PD", "R", "CG"):
            break
        time.sleep(0.02)
sys.exit(r.returncode)
"""


def test_submitit_job_folder_named_after_the_job_id(melon: Melon) -> None:
    """AutoExecutor(folder=".../logs/%j"): sbatch's --output and --error name a folder that
    submitit creates only after sbatch has returned (core.py `_submit_command`: the id parsed from
    sbatch's output, then `JobPaths.move_temporary_file` does `folder.mkdir` and moves the script in;
    then `_internal_process_submissions` moves the pickle in). The job must wait for that folder,
    not fail to open its output; submitit's `_submit` itself waits up to 60 s for the pickle."""
    env = slurm_names_env(melon)
    slurm_bin = env["PATH"].split(":")[0]
    late = melon.work / "late-bin"
    late.mkdir()
    (late / "sbatch").write_text(LATE_SBATCH.format(python=sys.executable, sbatch=f"{slurm_bin}/sbatch",
                                                    squeue=f"{slurm_bin}/squeue"))
    (late / "sbatch").chmod(0o755)
    env["PATH"] = f"{late}:{env['PATH']}"
    (out,) = _tool(melon, "submitit_run.py", str(melon.work / "submitit"), "--job-folder", env=env)
    job = melon.job(int(out["id"]))
    assert out.get("result") == 70, (out, job["state"], job["detail"])
    assert out["state"] == "COMPLETED" and job["state"] == "CD"
    folder = melon.work / "submitit" / "logs" / out["id"]
    assert out["folder"] == str(folder)
    assert job["output"] == str(folder / f"{out['id']}_0_log.out")
    assert (folder / f"{out['id']}_0_result.pkl").exists()
    assert "Job completed successfully" in (folder / f"{out['id']}_0_log.out").read_text()


def test_dask_jobqueue_scales_to_two_workers_and_cancels_them_on_close(melon: Melon) -> None:
    (result,) = _tool(melon, "dask_run.py", str(melon.work / "dask"))
    assert result == {"workers": 2, "sum": 285, "names": ["SLURMCluster-0", "SLURMCluster-1"]}
    workers = [j for j in melon.jobs("--all") if j["name"] == "dask-worker"]
    assert len(workers) == 2
    wait_for(lambda: {melon.job(j["id"])["state"] for j in workers} == {"CA"}, what="scancel of the workers")
    ids = ",".join(str(j["id"]) for j in workers)
    assert _sh(melon, f"sacct -X -P -n -o Comment -j {ids}").stdout == "dask\ndask\n"  # job_extra_directives


def test_parsl_runs_three_apps_through_its_slurm_provider(melon: Melon) -> None:
    (result,) = _tool(melon, "parsl_run.py", str(melon.work / "parsl"))
    assert result == {"results": [4, 9, 16]}
    blocks = [j for j in melon.jobs("--all") if j["name"].startswith("parsl.slurm.")]
    assert len(blocks) == 1
    wait_for(lambda: melon.job(blocks[0]["id"])["state"] == "CA", what="Parsl to cancel its block")


def test_myqueue_config_reads_the_nodes_from_sinfo(melon: Melon) -> None:
    """`mq config slurm` (myqueue/config.py guess_configuration) runs `sinfo --noheader -O
    CPUs,Memory,Partition` (myqueue/schedulers/slurm.py get_config), splits each line into cores,
    memory and partition, and writes the node types it finds; they must be melond's nodes."""
    home = melon.work / "mqhome"
    home.mkdir()
    env = {**slurm_names_env(melon), "MYQUEUE_TESTING": str(home)}  # myqueue's own stand-in for ~
    node = json.loads(melon.run("minfo", "--json").stdout)[0]
    partition = melon.job(melon.submit("-H", "--wrap", "true"))["partition"]
    r = subprocess.run(["mq", "config", "slurm", "--in-place"], capture_output=True, text=True, env=env,
                       cwd=melon.work, timeout=60)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    written = (home / ".myqueue" / "config.py").read_text()
    assert written.startswith("# Generated with mq config.\n")
    scope: dict = {}
    exec(written, scope)
    assert scope["config"] == {"scheduler": "slurm",
                               "nodes": [(partition, {"cores": node["cpus"], "memory": f"{node['memory']}M"})]}
    printed = subprocess.run(["mq", "config", "slurm"], capture_output=True, text=True, env=env, cwd=melon.work,
                             timeout=60).stdout
    assert printed == written + "\n"


def _sh(melon: Melon, line: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """A command line as the tool runs it (Parsl, Nextflow, Cromwell: through a shell or as argv)."""
    return subprocess.run(line, shell=True, capture_output=True, text=True, env=slurm_names_env(melon),
                          cwd=cwd or melon.work, timeout=60)


NEXTFLOW_RUN = """#!/bin/bash
#SBATCH -J nf-the_task_name
#SBATCH -o {work}/.command.log
#SBATCH --no-requeue
#SBATCH --signal B:USR2@30
#SBATCH -c 2
#SBATCH -t 01:00:00
#SBATCH --mem 50M
#SBATCH -p local
#SBATCH -A project --signal=USR2@60
NXF_CHDIR={work}
echo $SLURM_CPUS_PER_TASK > .exitcode-cpus
sleep 2
echo 0 > .exitcode
"""


def test_nextflow_command_lines(melon: Melon) -> None:
    """sbatch of a relative .command.run from the task's folder (stderr merged into what it parses),
    then squeue polls for exactly two columns, then scancel of a list."""
    task = melon.work / "work" / "ab" / "cdef"
    task.mkdir(parents=True)
    (task / ".command.run").write_text(NEXTFLOW_RUN.format(work=task))
    r = subprocess.run(["sbatch", ".command.run"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       env=slurm_names_env(melon), cwd=task, timeout=60)
    assert r.returncode == 0
    jid = re.search(r"Submitted batch job (\d+)", r.stdout).group(1)
    user = melon.env().get("USER") or "root"
    statuses = {"PD": "PENDING", "R": "RUNNING", "CD": "DONE", "CA": "ERROR", "F": "ERROR", "CG": "RUNNING"}
    seen = set()

    def poll() -> str | None:
        for args in (f"squeue --noheader -o '%i %t' -t all -p local -u {user}",
                     "squeue --noheader -o '%i %t' -t all --only-job-state"):
            out = _sh(melon, args)
            assert out.returncode == 0, out.stderr
            cols = dict(line.split() for line in out.stdout.splitlines() if len(line.split()) == 2)
            seen.add(statuses.get(cols.get(jid)))
        return statuses.get(cols.get(jid))
    wait_for(lambda: poll() == "DONE", timeout=30, what="squeue to show the task done")
    assert "RUNNING" in seen or "PENDING" in seen
    assert (task / ".exitcode").read_text() == "0\n" and (task / ".exitcode-cpus").read_text() == "2\n"
    a, b = melon.submit("-H", "--wrap", "true"), melon.submit("-H", "--wrap", "true")
    assert _sh(melon, f"scancel {a} {b}").returncode == 0
    assert {melon.job(a)["state"], melon.job(b)["state"]} == {"CA"}


def test_cromwell_command_lines(melon: Melon) -> None:
    """Cromwell's default SLURM backend: submit with --wrap, job-id-regex, check-alive by exit code, kill."""
    (melon.work / "cromwell").mkdir()
    (melon.work / "cromwell" / "script").write_text("echo cromwell ran; sleep 30\n")
    cwd = melon.work / "cromwell"
    r = _sh(melon, f"sbatch -J cromwell_abc_wf -D {cwd} -o {cwd}/stdout -e {cwd}/stderr -t 5 -p local -c 1 "
                   f"--mem-per-cpu=100 --wrap \"/bin/bash {cwd}/script\"")
    assert r.returncode == 0 and r.stderr == ""
    jid = re.fullmatch(r"Submitted batch job (\d+).*", r.stdout.strip()).group(1)
    wait_for(lambda: (cwd / "stdout").exists() and (cwd / "stdout").read_text() == "cromwell ran\n",
             what="the job's output")
    assert _sh(melon, f"squeue -j {jid}").returncode == 0  # alive
    assert _sh(melon, f"scancel {jid}").returncode == 0
    wait_for(lambda: melon.job(int(jid))["state"] == "CA", what="the kill")
    assert _sh(melon, "squeue -j 987654").returncode == 1  # gone: not alive
