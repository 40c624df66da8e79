#!/bin/bash
#SBATCH --job-name=hello
#SBATCH --time=0:15
#SBATCH --cpus-per-task=1
#SBATCH --mem=100M
# Twenty seconds of "work" under a fifteen-second limit: it completes only if someone extends it.
echo "job $SLURM_JOB_ID ($MELON_JOB_NAME) on $MELON_NODENAME with $SLURM_CPUS_PER_TASK CPU and $SLURM_MEM_PER_NODE MiB"
for i in $(seq 1 20); do
    echo "step $i"
    sleep 1
done
echo "done"
