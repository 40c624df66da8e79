"""sbatch options beyond the basics, end to end: arrays, dependencies, --signal, --export, -D."""
from __future__ import annotations

import subprocess

from conftest import BIN, Melon, slurm_names_env, wait_for


def test_array_runs_every_task_with_its_index(melon: Melon) -> None:
    first = melon.submit("--array", "1-4%2", "-o", "arr-%A_%a.out", "--wrap",
                         "echo $MELON_ARRAY_TASK_ID $SLURM_ARRAY_JOB_ID")
    tasks = melon.jobs("--all", "-j", str(first))
    assert sorted(j["array_task_id"] for j in tasks) == [1, 2, 3, 4]
    assert {j["array_job_id"] for j in tasks} == {first}
    wait_for(lambda: all(j["state"] == "CD" for j in melon.jobs("--all", "-j", str(first))), what="the array")
    for task in (1, 2, 3, 4):
        assert (melon.work / f"arr-{first}_{task}.out").read_text().split() == [str(task), str(first)]
    labels = melon.run("mqueue", "--all", "-j", str(first)).stdout
    assert f"{first}_3" in labels


def test_dependency_waits_then_runs_or_never(melon: Melon) -> None:
    first = melon.submit("-t", "0:30", "--wrap", "sleep 1; exit 1")
    ok = melon.submit("-d", f"afterok:{first}", "--wrap", "true")
    notok = melon.submit("-d", f"afternotok:{first}", "--wrap", "true")
    assert melon.job(ok)["reason"] == "Dependency"
    melon.wait_state(first, {"F"})
    assert melon.wait_state(notok, {"CD"}, timeout=15)["state"] == "CD"
    assert melon.wait_state(ok, {"PD"})["reason"] in ("Dependency", "DependencyNeverSatisfied")
    wait_for(lambda: melon.job(ok)["reason"] == "DependencyNeverSatisfied", timeout=15,
             what="the reason to say the dependency can never be met")
    melon.run("mcancel", str(ok))


def test_a_dependency_on_a_job_that_does_not_exist_is_refused_at_submission(melon: Melon) -> None:
    """As sbatch's `Job dependency problem`, rather than a job that would wait forever."""
    real = melon.submit("-H", "--wrap", "true")
    r = melon.run("mbatch", "-d", f"afterok:{real}:99999", "--wrap", "true", check=False)
    assert r.returncode == 1 and "Job dependency problem: no job 99999" in r.stderr, r.stderr
    env = slurm_names_env(melon)
    r = subprocess.run(["sbatch", "-d", "afterany:99998", "--wrap", "true"], capture_output=True, text=True,
                       env=env, cwd=melon.work, timeout=60)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr.startswith("sbatch: error: Batch job submission failed: Job dependency problem"), r.stderr
    assert [j["id"] for j in melon.jobs("--all")] == [real]  # nothing was stored
    melon.run("mcancel", str(real))


def test_signal_before_the_deadline(melon: Melon) -> None:
    jid = melon.submit("-t", "0:04", "--signal", "B:USR1@2", "--wrap",
                       "trap 'echo got-usr1; exit 0' USR1; sleep 30 & wait")
    job = melon.wait_state(jid, {"CD", "TO"}, timeout=20)
    assert job["state"] == "CD"
    assert "got-usr1" in (melon.work / f"melon-{jid}.out").read_text()


def test_the_warning_signal_comes_again_before_an_extended_deadline(melon: Melon) -> None:
    """--signal is re-armed by each extension: warned, extended, warned again before the new deadline."""
    script = melon.work / "warned.sh"
    script.write_text(
        "#!/bin/bash\n"
        "warned() { n=$((n + 1)); echo \"warned $n $(date +%s.%N)\"\n"
        f"  if [ $n = 1 ]; then {BIN / 'mextend'} -j $SLURM_JOB_ID -t +0:03; else exit 0; fi; }}\n"
        "n=0; trap warned USR1\nwhile true; do sleep 0.1; done\n")
    jid = melon.submit("-t", "0:06", "--signal", "B:USR1@3", str(script))
    job = melon.wait_state(jid, {"CD", "TO", "F"}, timeout=30)
    lines = (melon.work / f"melon-{jid}.out").read_text().splitlines()
    warnings = [line for line in lines if line.startswith("warned")]
    assert job["state"] == "CD" and len(warnings) == 2, lines
    first, second = (float(w.split()[2]) for w in warnings)
    assert 2.0 < second - first < 5.0  # 3 s later: 3 s before the deadline moved by +3 s
    assert job["time_limit_seconds"] == 9


def test_export_none_and_list(melon: Melon) -> None:
    env = melon.env(SECRET_THING="leak", KEEP_ME="yes")
    none = melon.submit("--export", "NONE", "--wrap", "env", env=env)
    some = melon.submit("--export", "A=1,B=two words", "--wrap", "env", env=env)
    everything = melon.submit("--wrap", "env", env=env)
    for jid in (none, some, everything):
        melon.wait_state(jid, {"CD"})
    out = {jid: (melon.work / f"melon-{jid}.out").read_text() for jid in (none, some, everything)}
    assert "SECRET_THING" not in out[none] and "MELON_JOB_ID" in out[none]
    assert "A=1\n" in out[some] and "B=two words\n" in out[some] and "KEEP_ME" not in out[some]
    assert "KEEP_ME=yes" in out[everything]


def test_chdir_and_arguments_reach_the_job_verbatim(melon: Melon) -> None:
    sub = melon.work / "sub dir"
    sub.mkdir()
    script = melon.work / "args.sh"
    script.write_text('#!/bin/sh\npwd\nfor a in "$@"; do printf "[%s]\\n" "$a"; done\n')
    tricky = ["a b", "$(touch pwned)", "`id`", "semi;colon", "quote'\"", "new\nline"]
    jid = melon.submit("-D", str(sub), str(script), *tricky)
    melon.wait_state(jid, {"CD"})
    lines = (sub / f"melon-{jid}.out").read_text()
    assert lines.startswith(f"{sub}\n")
    assert lines[len(str(sub)) + 1:] == "".join(f"[{a}]\n" for a in tricky)
    assert not (sub / "pwned").exists() and not (melon.work / "pwned").exists()


def test_hold_and_release(melon: Melon) -> None:
    jid = melon.submit("-H", "--wrap", "true")
    assert melon.job(jid)["reason"] == "JobHeldUser"
    assert melon.run("mrelease", str(jid)).stdout.strip() == f"Released job {jid}"
    melon.wait_state(jid, {"CD"})
    later = melon.submit("--begin", "now+60", "--wrap", "true")
    melon.run("mhold", str(later))
    assert melon.job(later)["reason"] == "JobHeldUser"
    r = melon.run("mhold", str(jid), check=False)
    assert r.returncode == 1 and "only pending jobs" in r.stderr
    melon.run("mcancel", str(later))



def test_an_empty_value_is_not_given_for_sbatch_srun_and_mbatch(melon: Melon) -> None:
    """`--partition=`, `--account=`, `--qos=`: Slurm stores "" and then treats it as no value
    (slurmctld's _get_job_parts takes the default partition), so the default applies and hides
    what a lower layer gave, on the command line and in #SBATCH lines alike
    (melond.spec.request._EMPTY_IS_UNSET)."""
    import subprocess

    from conftest import slurm_names_env
    env = slurm_names_env(melon)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), capture_output=True, text=True, env=env, cwd=melon.work, timeout=60)
    default = melon.job(melon.submit("-H", "--wrap", "true"))["partition"]
    (melon.work / "e.sh").write_text("#!/bin/sh\n#SBATCH -p nosuch --account= --qos= --reservation=\ntrue\n")
    r = run("sbatch", "e.sh")
    assert r.returncode == 1 and "unknown partition" in r.stderr  # the script's -p counts ...
    r = run("sbatch", "--parsable", "--partition=", "--account=", "--qos=", "--wckey=", "e.sh")
    assert (r.returncode, r.stderr) == (0, ""), r.stderr  # ... unless an empty one overrides it
    job = melon.job(int(r.stdout))
    assert (job["partition"], job.get("account"), job.get("slurm_options") or {}) == (default, None, {})
    r = run("mbatch", "--parsable", "-p", "", "e.sh")
    assert r.returncode == 0 and melon.job(int(r.stdout))["partition"] == default
    r = subprocess.run(["sbatch", "--parsable", "e.sh"], capture_output=True, text=True, cwd=melon.work,
                       env={**env, "SBATCH_PARTITION": ""}, timeout=60)
    assert r.returncode == 0 and melon.job(int(r.stdout))["partition"] == default
    r = run("srun", "--partition=", "--account=", "-J", "empty-srun", "true")
    assert (r.returncode, r.stderr) == (0, "")
    assert [j["partition"] for j in melon.jobs("--all") if j["name"] == "empty-srun"] == [default]
    r = run("sbatch", "--time=", "e.sh")  # Slurm refuses this one: "Invalid --time specification"
    assert r.returncode == 1 and r.stderr.startswith("sbatch: error: --time= (command line)")
