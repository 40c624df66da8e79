#!/usr/bin/env bash
# How melon-0.1.0.db was made: Melon 0.1.0's own melond and CLIs (commit 91caef0, schema 11), real jobs.
#   git worktree add /tmp/melon-0.1.0 91caef0
#   bash tests/data/upgrade/make-0.1.0.sh /tmp/melon-0.1.0 .venv/bin/python
# then melond stopped, its STATE/melon.db copied here with SQLite's backup API (one file, no WAL).
set -euo pipefail
OLD=$1
PY=$2
state=$(mktemp -d /tmp/old-state.XXXX); work=$(mktemp -d /tmp/old-work.XXXX); chmod 755 $work
export PYTHONPATH=$OLD MELON_API=unix:$state/melond.sock
run() { local mod=$1; shift; $PY -c "import sys; sys.argv[0]='$mod'; from cli.$mod import main; sys.exit(main())" "$@"; }
$PY -c "import sys; from melond.main import main; sys.exit(main())" --state-dir $state --kill-wait 1 2>$state/log &
pid=$!
for _ in $(seq 100); do [ -S $state/melond.sock ] && break; sleep 0.1; done
cd $work
a=$(run mbatch --parsable -J done -t 5:00 --wrap 'echo hello'); echo a=$a
b=$(run mbatch --parsable -J failed --wrap 'exit 3'); echo b=$b
c=$(run mbatch --parsable -J extended -t 0:30 --wrap 'sleep 2'); echo c=$c
sleep 1; run mextend -j $c -t +1:00
d=$(run mbatch --parsable -J held -H --wrap 'true'); echo d=$d
e=$(run mbatch --parsable -J arr --array 1-3 --wrap 'echo $SLURM_ARRAY_TASK_ID'); echo e=$e
f=$(run mbatch --parsable -J cancelled -t 10:00 --wrap 'sleep 100'); echo f=$f
sleep 1; run mcancel $f
g=$(run mbatch --parsable -J waiting -b now+1hour --wrap 'true'); echo g=$g
sleep 4
run mqueue --all
kill $pid; wait $pid || true
echo STATE=$state
