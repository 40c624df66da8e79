"""Slurm's own command names (squeue, scancel, ...) speaking Slurm's interface over melond's API,
for the tools that drive Slurm. Opt-in: their launchers live in a directory of their own, which
`eval "$(melon-slurm env)"` puts on PATH, so they never shadow a real Slurm unasked."""
