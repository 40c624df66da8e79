"""submitit against Melon's Slurm commands: a mapped array, an exception, a cancel; or, with
--job-folder, one function whose logs go to a folder named after its job id.

    python submitit_run.py FOLDER [--python PYTHON] [--no-srun] [--only-map | --job-folder]

Prints one JSON line per check; the test reads them.
"""
import argparse
import json
import time

import submitit


def divide(a: float, b: float) -> float:
    return a / b


def times_ten(x: int) -> int:
    return x * 10


def in_job_folder(folder: str) -> None:
    """AutoExecutor(folder=".../logs/%j"): submitit makes that folder only after sbatch has
    returned (it learns the id from sbatch's output), so the job can start before its
    --output/--error folder exists."""
    ex = submitit.AutoExecutor(folder=f"{folder}/logs/%j")
    ex.update_parameters(timeout_min=5)
    job = ex.submit(times_ten, 7)
    try:
        out = {"result": job.result()}
    except Exception as exc:  # the test shows why, with what melond says of the job
        out = {"exception": type(exc).__name__, "text": str(exc)[-2000:]}
    print(json.dumps({**out, "id": job.job_id, "folder": str(job.paths.folder),
                      "state": job.get_info(mode="force").get("State")}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--python")
    parser.add_argument("--no-srun", action="store_true")
    parser.add_argument("--only-map", action="store_true")
    parser.add_argument("--job-folder", action="store_true")
    args = parser.parse_args()
    if args.job_folder:
        in_job_folder(args.folder)
        return
    ex = submitit.SlurmExecutor(folder=args.folder, python=args.python)
    ex.update_parameters(time=5, use_srun=not args.no_srun)
    jobs = ex.map_array(times_ten, [1, 2, 3])
    results = [j.result() for j in jobs]
    print(json.dumps({"map": results, "ids": [j.job_id for j in jobs],
                      "hosts": [j.get_info(mode="force").get("NodeList") for j in jobs]}), flush=True)
    if args.only_map:
        return
    failed = ex.submit(divide, 1, 0).exception()
    print(json.dumps({"exception": type(failed).__name__, "text": str(failed)[-2000:]}), flush=True)
    slow = ex.submit(time.sleep, 300)
    while slow.get_info(mode="force").get("State") != "RUNNING":
        time.sleep(0.3)
    slow.cancel()
    while not slow.get_info(mode="force").get("State", "").startswith("CANCELLED"):
        time.sleep(0.3)
    print(json.dumps({"cancelled": slow.state, "id": slow.job_id, "done": slow.done(force_check=True)}), flush=True)


if __name__ == "__main__":
    main()
