#!/usr/bin/env bash
# The prior, three ways, over seeds (issue "the prior, trained"; paper Tab. 3 "w/o prior model"): PASN of the demo
# (configs/abaw.py:demo) on the synthetic Aff-Wild2, 500 steps a run (a third of the demo's 1,500), per seed S:
#   RUNS/trained-sS    the trained prior: both towers from a DLN workdir (stage 2 of `make demo`)
#   RUNS/random-sS     the random prior: a random frozen f_id minus its trainable copy (demo,random_prior)
#   RUNS/no_prior-sS   no prior: one ResNet-50 tower (demo,no_prior)
# then prints, per variant, mean ± sd over the seeds of S_AU, S_EXPR and S_VA on the validation people (unseen in
# training), from RUNS/<run>/eval/500/metrics.json.
#
#   launch/prior_seeds.sh RUNS DLN_WORKDIR        (e.g. launch/prior_seeds.sh runs/prior_seeds runs/demo/dln)
#
# SEEDS picks the seeds (default "0 1 2"); PYTHON the interpreter. A run whose metrics exist is skipped.
set -euo pipefail
RUNS=${1:?usage: launch/prior_seeds.sh RUNS DLN_WORKDIR}
DLN=${2:?usage: launch/prior_seeds.sh RUNS DLN_WORKDIR}
PYTHON=${PYTHON:-python3}
SEEDS=${SEEDS:-"0 1 2"}
cd "$(dirname "$0")/.."
schedule=(--config.num_steps=500 --config.eval_every=500 --config.checkpoint_every=500
          --config.optim.t0_steps=500 --config.optim.warmup_steps=50)

train() {  # NAME SEED CONFIG [--config.KEY=VALUE ...]
  local workdir=$RUNS/$1-s$2 seed=$2 config=$3
  shift 3
  [[ -f $workdir/eval/500/metrics.json ]] && return 0
  echo "== $workdir"
  "$PYTHON" -m pasn_jax.main --config="$config" --workdir="$workdir" --config.seed="$seed" "${schedule[@]}" "$@"
}

for seed in $SEEDS; do
  train trained "$seed" configs/abaw.py:demo "--config.model.prior_from=$DLN"
  train random "$seed" configs/abaw.py:demo,random_prior
  train no_prior "$seed" configs/abaw.py:demo,no_prior
done

"$PYTHON" - "$RUNS" $SEEDS <<'EOF'
import json, sys
import numpy as np
runs, seeds = sys.argv[1], sys.argv[2:]
print(f"{'variant':10s} " + " ".join(f"{k:>15s}" for k in ("S_AU", "S_EXPR", "S_VA")) + f"   ({len(seeds)} seeds)")
for variant in ("trained", "random", "no_prior"):
    scores = [json.load(open(f"{runs}/{variant}-s{s}/eval/500/metrics.json")) for s in seeds]
    cells = [np.array([m[k] for m in scores]) for k in ("s_au", "s_expr", "s_va")]
    print(f"{variant:10s} " + " ".join(f"{c.mean():7.3f} ± {c.std(ddof=1) if len(c) > 1 else 0:.3f}" for c in cells))
EOF
