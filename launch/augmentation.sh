#!/usr/bin/env bash
# The paper's data augmentation (§3.4, Tab. 3 "w/o data augmentation") on the synthetic Aff-Wild2 whose EXPR labels
# are left on 20% of the training videos (configs/abaw.py:scarce_expr), per seed:
#   RUNS/base-sS       Aff-Wild2 alone (also the teacher)
#   RUNS/rules-sS      + the AU->EXPR rule pseudo labels (RUNS/pseudo-rules, mined once from the training frames)
#   RUNS/teacher-sS    + the confident predictions of RUNS/base-sS on frames lacking labels (RUNS/pseudo-teacher-sS)
#   RUNS/affectnet-sS  + the synthetic AffectNet (EXPR and VA of other people)
# Each run trains from scratch for the variant's 500 steps; the mixtures draw Aff-Wild2 three times as often as the
# other source. Scores: RUNS/<run>/eval/500/metrics.json (validation people, unseen in training).
#
#   launch/augmentation.sh RUNS
#
# SEEDS picks the seeds (default "0 1 2"); PYTHON the interpreter. A run whose metrics exist is skipped.
set -euo pipefail
RUNS=${1:?usage: launch/augmentation.sh RUNS}
PYTHON=${PYTHON:-python3}
SEEDS=${SEEDS:-"0 1 2"}
cd "$(dirname "$0")/.."
config=--config=configs/abaw.py:scarce_expr

train() {  # NAME SEED [--config.KEY=VALUE ...]
  local workdir=$RUNS/$1-s$2
  shift 2
  [[ -f $workdir/eval/500/metrics.json ]] && return 0
  echo "== $workdir"
  "$PYTHON" -m pasn_jax.main $config --workdir="$workdir" --config.seed="$seed" "$@"
}

for seed in $SEEDS; do
  train base "$seed"
  if [[ ! -f $RUNS/pseudo-rules/train.json ]]; then
    "$PYTHON" -m pasn_jax.pseudo rules --workdir "$RUNS/base-s$seed" --out "$RUNS/pseudo-rules"
  fi
  train rules "$seed" "--config.data.sources=affwild2=3,$RUNS/pseudo-rules=1"
  if [[ ! -f $RUNS/pseudo-teacher-s$seed/train.json ]]; then
    "$PYTHON" -m pasn_jax.pseudo teacher --workdir "$RUNS/base-s$seed" --out "$RUNS/pseudo-teacher-s$seed"
  fi
  train teacher "$seed" "--config.data.sources=affwild2=3,$RUNS/pseudo-teacher-s$seed=1"
  train affectnet "$seed" "--config.data.sources=affwild2=3,synthetic:affectnet=1"
done
