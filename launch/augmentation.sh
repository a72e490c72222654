#!/usr/bin/env bash
# The paper's data augmentation (§3.4, Tab. 3 "w/o data augmentation") on the synthetic Aff-Wild2 whose EXPR labels
# are left on 20% of the training videos (configs/abaw.py:scarce_expr, 500 steps a run). Per seed S:
#
# From scratch (every run 500 steps):
#   RUNS/base-sS          Aff-Wild2 alone
#   RUNS/rules-sS         + the AU->EXPR rule pseudo labels (RUNS/pseudo-rules, mined once from the training frames)
#   RUNS/teacher-sS       + base-sS's confident predictions on frames lacking labels (RUNS/pseudo-teacher-sS)
#   RUNS/affectnet-sS     + the synthetic AffectNet (EXPR and VA of other people)
# Fine-tuning, as the paper does (config.init_from; a fresh optimizer and schedule, 500 steps):
#   RUNS/ftbase-sS        base-sS fine-tuned on Aff-Wild2 alone (1000 steps in all): the teacher of ft2teacher
#   RUNS/ft2base-sS       ftbase-sS fine-tuned on Aff-Wild2 alone (the control)
#   RUNS/ft2rules-sS      ftbase-sS fine-tuned on Aff-Wild2 + the rule pseudo labels
#   RUNS/ft2teacher-sS    ftbase-sS fine-tuned on Aff-Wild2 + its own confident predictions (RUNS/pseudo-teacher2-sS)
#   RUNS/ft2affectnet-sS  ftbase-sS fine-tuned on Aff-Wild2 + the synthetic AffectNet
# The mixtures draw Aff-Wild2 three times as often as the added source. Scores:
# RUNS/<run>/eval/500/metrics.json (the validation people, unseen in training).
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

pseudo() {  # OUT COMMAND ARGS...: pseudo labels into RUNS/OUT, once
  local out=$RUNS/$1
  shift
  [[ -f $out/train.json ]] || "$PYTHON" -m pasn_jax.pseudo "$@" --out "$out"
}

for seed in $SEEDS; do
  train base "$seed"
  pseudo pseudo-rules rules --workdir "$RUNS/base-s$seed"
  train rules "$seed" "--config.data.sources=affwild2=3,$RUNS/pseudo-rules=1"
  pseudo "pseudo-teacher-s$seed" teacher --workdir "$RUNS/base-s$seed"
  train teacher "$seed" "--config.data.sources=affwild2=3,$RUNS/pseudo-teacher-s$seed=1"
  train affectnet "$seed" "--config.data.sources=affwild2=3,synthetic:affectnet=1"

  train ftbase "$seed" "--config.init_from=$RUNS/base-s$seed"
  from=--config.init_from=$RUNS/ftbase-s$seed
  train ft2base "$seed" "$from"
  train ft2rules "$seed" "$from" "--config.data.sources=affwild2=3,$RUNS/pseudo-rules=1"
  pseudo "pseudo-teacher2-s$seed" teacher --workdir "$RUNS/ftbase-s$seed"
  train ft2teacher "$seed" "$from" "--config.data.sources=affwild2=3,$RUNS/pseudo-teacher2-s$seed=1"
  train ft2affectnet "$seed" "$from" "--config.data.sources=affwild2=3,synthetic:affectnet=1"
done
