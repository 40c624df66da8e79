#!/usr/bin/env bash
# The main job, end to end on the embedded local node: start melond, submit, queue, extend, wait, show.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/.venv/bin
state=$(mktemp -d /tmp/melon-demo.XXXXXX)
work=$(mktemp -d /tmp/melon-work.XXXXXX)
chmod 755 "$work"
export MELON_API="unix:$state/melond.sock"

"$BIN/melond" --state-dir "$state" --kill-wait 5 --log-format text 2>"$state/melond.log" &
melond=$!
finish() {  # stop melond, show its log if something failed, and leave nothing behind
    local rc=$?
    kill $melond 2>/dev/null; wait $melond 2>/dev/null || true
    if [ $rc != 0 ]; then echo "demo: failed; melond's log:" >&2; tail -n 30 "$state/melond.log" >&2; fi
    rm -rf "$state" "$work"
}
trap finish EXIT
for _ in $(seq 50); do [ -S "$state/melond.sock" ] && break; sleep 0.1; done

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
cp examples/hello.sh "$work/"
cd "$work"

say minfo;                       "$BIN/minfo"
say mbatch hello.sh;             job=$("$BIN/mbatch" --parsable hello.sh); echo "Submitted batch job $job"
sleep 2
say mqueue;                      "$BIN/mqueue"
say "mextend -j $job -t +0:30";  "$BIN/mextend" -j "$job" -t +0:30
say "mqueue   # wait for it ...";  "$BIN/mqueue"
while "$BIN/mqueue" -j "$job" --json | grep -q '"state": "\(R\|PD\)"'; do sleep 1; done
say "mshow $job";                "$BIN/mshow" "$job"
say "cat melon-$job.out";        cat "melon-$job.out"
state_now=$("$BIN/mshow" -p "$job" | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["state"])')
[ "$state_now" = CD ] || { echo "demo: expected the extended job to complete, got $state_now" >&2; exit 1; }
printf '\nThe job outlived its original 15 s limit because it was extended.\n'
cat <<EOF

Melon's commands are in $BIN. To use them from any shell (the README's "Using it"):

  export PATH="$BIN:\$PATH"      # add this line to ~/.bashrc to keep it
  melond &                     # your own melond; state in ~/.local/state/melon (as root: /var/lib/melon)
  mbatch --wrap 'hostname'

To install Melon for every user of a machine or cluster, see "Install on a cluster" in README.md.
EOF
