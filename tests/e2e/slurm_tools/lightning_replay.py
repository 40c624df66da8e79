"""PyTorch Lightning's SLURM auto-requeue, replayed without torch (too heavy for the test suite).

    srun python lightning_replay.py [--steps N] [--step-seconds S]

Each step below is what `Trainer(...).fit(model)` does on a SLURM cluster, in the same order and
with the same calls, named after the Lightning source it follows (Lightning-AI/pytorch-lightning,
src/lightning/...): the cluster environment chosen at start, the resume from the highest
`hpc_ckpt_N.ckpt` in the root directory, the SIGUSR1 and SIGTERM handlers, and on SIGUSR1 the
checkpoint and `scontrol requeue`. A "checkpoint" is JSON instead of torch.save, and a training
step is a sleep. Lines of the replay's own (not Lightning's) start with "replay:".
"""
import argparse
import json
import logging
import os
import re
import shutil
import signal
import sys
import threading
import time
import warnings
from subprocess import call  # signal_connector.py calls scontrol through this very name

# lightning/pytorch/__init__.py: the "lightning.pytorch" logger at INFO, printing bare messages to
# stderr through its own StreamHandler when the root logger has none.
_logger = logging.getLogger("lightning.pytorch")
_logger.setLevel(logging.INFO)
if not logging.getLogger().hasHandlers():
    _logger.addHandler(logging.StreamHandler())
    _logger.propagate = False
log = logging.getLogger("lightning.pytorch.trainer.connectors.signal_connector")
ckpt_log = logging.getLogger("lightning.pytorch.trainer.connectors.checkpoint_connector")


def _global_rank() -> int:
    """lightning/fabric/utilities/rank_zero.py `_get_rank`: the first of RANK, LOCAL_RANK,
    SLURM_PROCID, JSM_NAMESPACE_RANK that is set."""
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if key in os.environ:
            return int(os.environ[key])
    return 0


def rank_zero_info(message: str) -> None:
    """lightning/pytorch/utilities/rank_zero.py: logged by global rank 0 only."""
    if _global_rank() == 0:
        logging.getLogger("lightning.pytorch.utilities.rank_zero").info(message)


# ---- fabric/plugins/environments/slurm.py ------------------------------------------------------

def _is_slurm_interactive_mode() -> bool:
    return os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive")


def _is_srun_used() -> bool:
    return "SLURM_NTASKS" in os.environ and not _is_slurm_interactive_mode()


class SLURMEnvironment:
    """`SLURMEnvironment(auto_requeue=True, requeue_signal=None)`: SIGUSR1 by default on Unix."""

    def __init__(self, auto_requeue: bool = True, requeue_signal: "signal.Signals | None" = None) -> None:
        self.auto_requeue = auto_requeue
        self.requeue_signal = signal.SIGUSR1 if requeue_signal is None else requeue_signal
        self._validate_srun_used()
        self._validate_srun_variables()

    @staticmethod
    def detect() -> bool:
        SLURMEnvironment._validate_srun_used()
        return _is_srun_used()

    @staticmethod
    def _validate_srun_used() -> None:
        if shutil.which("srun") is not None and not _is_srun_used():
            hint = " ".join(["srun", os.path.basename(sys.executable), *sys.argv])[:64]
            warnings.warn("The `srun` command is available on your system but is not used. HINT: If your intention"
                          f" is to run Lightning on SLURM, prepend your python command with `srun` like so: {hint} ...")

    @staticmethod
    def _validate_srun_variables() -> None:
        ntasks = int(os.environ.get("SLURM_NTASKS", "1"))
        if ntasks > 1 and "SLURM_NTASKS_PER_NODE" not in os.environ:
            raise RuntimeError(f"You set `--ntasks={ntasks}` in your SLURM bash script, but this variable is not"
                               f" supported. HINT: Use `--ntasks-per-node={ntasks}` instead.")

    def global_rank(self) -> int:
        return int(os.environ["SLURM_PROCID"])


def _choose_and_init_cluster_environment() -> "SLURMEnvironment | None":
    """pytorch/trainer/connectors/accelerator_connector.py: TorchElastic first (its variables are
    not set here), then SLURMEnvironment if its detect() says so; None stands for
    LightningEnvironment, which installs no SIGUSR1 handler."""
    return SLURMEnvironment() if SLURMEnvironment.detect() else None


# ---- pytorch/trainer/connectors/checkpoint_connector.py `_CheckpointConnector` -------------------

def _max_ckpt_version_in_folder(dir_path: str, name_key: str = "ckpt_") -> "int | None":
    """`__max_ckpt_version_in_folder`: the highest number in the names that contain name_key."""
    if not os.path.exists(dir_path):
        return None
    files = [x for x in os.listdir(dir_path) if name_key in x]
    if not files:
        return None
    return max(int(re.sub("[^0-9]", "", name.split(name_key)[-1])) for name in files)


def hpc_save_path(folderpath: str) -> str:
    """`hpc_save_path`: one above the highest `*ckpt_N` (note: the key is "ckpt_", not "hpc_ckpt_")."""
    max_suffix = _max_ckpt_version_in_folder(folderpath)
    return os.path.join(folderpath, f"hpc_ckpt_{(max_suffix if max_suffix is not None else 0) + 1}.ckpt")


def _hpc_resume_path(default_root_dir: str) -> "str | None":
    """`_hpc_resume_path`: the highest hpc_ckpt_N.ckpt in the root directory."""
    if not os.path.isdir(default_root_dir):
        return None
    max_version = _max_ckpt_version_in_folder(default_root_dir, "hpc_ckpt_")
    return None if max_version is None else os.path.join(default_root_dir, f"hpc_ckpt_{max_version}.ckpt")


# ---- the trainer ---------------------------------------------------------------------------------

class Trainer:
    def __init__(self, max_steps: int, step_seconds: float) -> None:
        self.default_root_dir = os.getcwd()  # Trainer(default_root_dir=None): the working directory
        self.max_steps = max_steps
        self.step_seconds = step_seconds
        self.global_step = 0
        self.cluster_environment = _choose_and_init_cluster_environment()
        self.received_sigterm = False
        self._original_handlers: dict = {}

    @property
    def is_global_zero(self) -> bool:
        return (self.cluster_environment.global_rank() if self.cluster_environment else _global_rank()) == 0

    def fit(self) -> None:
        """trainer.py `fit` -> `_fit_impl` -> `_run` -> `_run_stage`, the parts that matter here."""
        ckpt_path = self._parse_ckpt_path(None)
        if ckpt_path:  # `_restore_modules_and_callbacks` -> `resume_start`, ..., `resume_end`
            rank_zero_info(f"Restoring states from the checkpoint path at {ckpt_path}")
            with open(ckpt_path) as f:
                self.global_step = json.load(f)["global_step"]
            rank_zero_info(f"Restored all states from the checkpoint at {ckpt_path}")
        self.register_signal_handlers()  # after resume_end, before `_run_stage`
        print(f"replay: training from step {self.global_step}", flush=True)
        try:
            while self.global_step < self.max_steps:  # training_epoch_loop.py, one batch a turn
                time.sleep(self.step_seconds)
                self.global_step += 1
                if self.received_sigterm:  # `on_advance_end`: raise SIGTERMException (exit 143)
                    print(f"replay: SIGTERMException at step {self.global_step}", flush=True)
                    raise SystemExit(128 + 15)
            rank_zero_info(f"`Trainer.fit` stopped: `max_steps={self.max_steps}` reached.")
        finally:
            self.teardown()

    def _parse_ckpt_path(self, ckpt_path: "str | None") -> "str | None":
        """`_CheckpointConnector._parse_ckpt_path`: None on SLURM with an HPC checkpoint means "hpc"."""
        if ckpt_path is None and SLURMEnvironment.detect() and _hpc_resume_path(self.default_root_dir) is not None:
            ckpt_path = _hpc_resume_path(self.default_root_dir)
        return ckpt_path

    def save_checkpoint(self, filepath: str) -> None:
        """`Trainer.save_checkpoint` -> strategy.save_checkpoint: rank 0 writes the file."""
        if self.is_global_zero:
            with open(filepath, "w") as f:
                json.dump({"global_step": self.global_step, "epoch": 0}, f)

    # ---- pytorch/trainer/connectors/signal_connector.py `_SignalConnector` ----------------------

    def register_signal_handlers(self) -> None:
        self.received_sigterm = False
        self._original_handlers = {s: signal.getsignal(s) for s in signal.valid_signals()
                                   if s not in (signal.SIGKILL, signal.SIGSTOP)}
        sigusr_handlers = []
        sigterm_handlers = [self._sigterm_notifier_fn]
        environment = self.cluster_environment
        if isinstance(environment, SLURMEnvironment) and environment.auto_requeue:
            log.info("SLURM auto-requeueing enabled. Setting signal handlers.")
            sigusr_handlers.append(self._slurm_sigusr_handler_fn)
            sigterm_handlers.append(self._sigterm_handler_fn)
        sigusr = environment.requeue_signal if isinstance(environment, SLURMEnvironment) else signal.SIGUSR1
        if sigusr_handlers and not self._has_already_handler(sigusr):
            self._register_signal(sigusr, _HandlersCompose(sigusr_handlers))
        if self._has_already_handler(signal.SIGTERM):
            sigterm_handlers.append(signal.getsignal(signal.SIGTERM))
        self._register_signal(signal.SIGTERM, _HandlersCompose(sigterm_handlers))

    def _slurm_sigusr_handler_fn(self, signum: int, _: object) -> None:
        rank_zero_info(f"Handling auto-requeue signal: {signum}")
        # (the loggers' finalize("finished") comes here: this replay has none)
        self.save_checkpoint(hpc_save_path(self.default_root_dir))
        if self.is_global_zero:
            array_job_id = os.getenv("SLURM_ARRAY_JOB_ID")
            if array_job_id is not None:
                array_task_id = os.environ["SLURM_ARRAY_TASK_ID"]
                job_id = f"{array_job_id}_{array_task_id}"
            else:
                job_id = os.environ["SLURM_JOB_ID"]
            assert re.match("[0-9_-]+", job_id)
            cmd = ["scontrol", "requeue", job_id]
            log.info(f"requeing job {job_id}...")
            try:
                result = call(cmd)
            except FileNotFoundError:
                result = call(" ".join(cmd), shell=True)
            if result == 0:
                log.info(f"Requeued SLURM job: {job_id}")
            else:
                log.warning(f"Requeuing SLURM job {job_id} failed with error code {result}")

    def _sigterm_notifier_fn(self, signum: int, _: object) -> None:
        log.info(f"[rank: {_global_rank()}] Received SIGTERM: {signum}")
        # (launcher.kill: none under srun, where SLURM creates the processes)
        self.received_sigterm = True

    def _sigterm_handler_fn(self, signum: int, _: object) -> None:
        log.info(f"Bypassing SIGTERM: {signum}")

    def teardown(self) -> None:
        for signum, handler in self._original_handlers.items():
            if handler is not None:
                self._register_signal(signum, handler)
        self._original_handlers = {}

    @staticmethod
    def _has_already_handler(signum: int) -> bool:
        return signal.getsignal(signum) not in (None, signal.SIG_DFL)

    @staticmethod
    def _register_signal(signum: int, handlers: object) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signum, handlers)


class _HandlersCompose:
    """signal_connector.py `_HandlersCompose`: each handler in turn."""

    def __init__(self, signal_handlers: list) -> None:
        self.signal_handlers = signal_handlers

    def __call__(self, signum: int, frame: object) -> None:
        for signal_handler in self.signal_handlers:
            if isinstance(signal_handler, int):
                signal_handler = signal.getsignal(signal_handler)
            if callable(signal_handler):
                signal_handler(signum, frame)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=140)
    parser.add_argument("--step-seconds", type=float, default=0.1)
    args = parser.parse_args()
    print(f"replay: job {os.environ.get('SLURM_JOB_ID')} SLURM_RESTART_COUNT={os.environ.get('SLURM_RESTART_COUNT')}"
          f" MELON_RESTART_COUNT={os.environ.get('MELON_RESTART_COUNT')}", flush=True)
    Trainer(args.steps, args.step_seconds).fit()


if __name__ == "__main__":
    main()
