#!/usr/bin/env bash
# The paper's six ensemble members (§4.3.1), one after another on this machine: a model per fold of train + val
# (config.data.fold 0..4 -> RUNS/fold-1 .. RUNS/fold-5) and one on the original split (RUNS/original).
#
#   launch/folds.sh RUNS [--config=configs/abaw.py[:VARIANT]] [--config.KEY=VALUE ...]
#
# A member is done when its training command exits 0 after its last step; then RUNS/<member>/finished records the
# command and a later run of this script skips it. A member that stops before (preempted: exit 75, or crashed) is
# run again, resuming from its last checkpoint, up to RETRIES times (default 3); the script never moves on past an
# unfinished member. FOLDS picks members (default "0 1 2 3 4 -1"): one cluster job per member runs
# `FOLDS=k launch/folds.sh RUNS ...` (launch/README.md). PYTHON picks the interpreter.
set -euo pipefail
RUNS=${1:?usage: launch/folds.sh RUNS [--config=configs/abaw.py[:VARIANT]] [--config.KEY=VALUE ...]}
shift
PYTHON=${PYTHON:-python3}
FOLDS=${FOLDS:-"0 1 2 3 4 -1"}
RETRIES=${RETRIES:-3}
cd "$(dirname "$0")/.."
config=--config=configs/abaw.py
if [[ "${1:-}" == --config=* ]]; then
  config=$1
  shift
fi

for fold in $FOLDS; do
  if [[ $fold == -1 ]]; then name=original; else name=fold-$((fold + 1)); fi
  workdir="$RUNS/$name"
  command="$config --workdir=$workdir --config.data.fold=$fold $*"
  if [[ -f "$workdir/finished" && "$(cat "$workdir/finished")" == "$command" ]]; then
    echo "== $name: finished earlier ($workdir/finished)"
    continue
  fi
  for attempt in $(seq 1 "$RETRIES"); do
    echo "== $name (config.data.fold=$fold), attempt $attempt of $RETRIES -> $workdir"
    status=0
    "$PYTHON" -m pasn_jax.main "$config" --workdir="$workdir" --config.data.fold="$fold" --preempted_exit_code=75 \
        "$@" || status=$?
    if [[ $status == 0 ]]; then
      echo "$command" > "$workdir/finished.tmp" && mv "$workdir/finished.tmp" "$workdir/finished"
      continue 2
    fi
    echo "== $name stopped with status $status before its last step; resuming it" >&2
  done
  echo "error: $name did not finish in $RETRIES attempts; run the same command again to resume it" >&2
  exit 1
done
echo "== all members finished: $FOLDS in $RUNS"
