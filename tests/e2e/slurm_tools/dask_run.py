"""dask-jobqueue's SLURMCluster against Melon's Slurm commands: 2 workers compute a sum.

    python dask_run.py LOG_DIR
"""
import json
import sys

from dask_jobqueue import SLURMCluster
from distributed import Client


def square(x: int) -> int:
    return x * x


def main() -> None:
    cluster = SLURMCluster(cores=1, processes=1, memory="512MB", walltime="00:10:00", interface="lo",
                           log_directory=sys.argv[1], job_extra_directives=["--comment=dask"])
    cluster.scale(jobs=2)
    with Client(cluster) as client:
        client.wait_for_workers(2, timeout=90)
        workers = len(client.scheduler_info()["workers"])
        total = client.submit(sum, client.map(square, range(10))).result()
    names = sorted(cluster.workers)
    cluster.close()
    print(json.dumps({"workers": workers, "sum": total, "names": names}), flush=True)


if __name__ == "__main__":
    main()
