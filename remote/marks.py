"""Names a job's processes carry, shared by the node side and Melon's srun.

Standard library only, and nothing else: srun imports it in every step, where `enum` (which
remote/protocol.py needs) would cost it ~4 ms.
"""

STEP_MARK = "MELON_STEP"  # srun sets it to `<job id>.<step id>` in each task's environment (remote/steps.py)
