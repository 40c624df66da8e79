"""Parsl with its Slurm provider against Melon's Slurm commands: 3 apps run and return.

    python parsl_run.py RUN_DIR
"""
import json
import os
import sys

import parsl
from parsl.app.app import python_app
from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.providers import SlurmProvider


@python_app
def square(x: int) -> int:
    return x * x


def main() -> None:
    bindir = os.path.dirname(sys.executable)  # process_worker_pool.py lives beside the interpreter
    provider = SlurmProvider(nodes_per_block=1, init_blocks=1, min_blocks=0, max_blocks=1, walltime="00:10:00",
                             worker_init=f"export PATH={bindir}:$PATH", cmd_timeout=30)
    config = Config(executors=[HighThroughputExecutor(label="slurm", address="127.0.0.1", max_workers_per_node=1,
                                                      cores_per_worker=1, provider=provider)],
                    run_dir=sys.argv[1], strategy="none")
    with parsl.load(config):
        results = [f.result() for f in [square(i) for i in (2, 3, 4)]]
    print(json.dumps({"results": results}), flush=True)


if __name__ == "__main__":
    main()
