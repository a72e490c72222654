#!/usr/bin/env bash
# The demo (`make demo`): the paper's whole pipeline on the embedded synthetic data, one training command per stage:
#   1. face identity: f_id trained with ArcFace on synthetic people       -> RUNS/face_id
#   2. DLN: f_expr from f_id, Emb = f_expr - f_id on expression triplets   -> RUNS/dln
#   3. PASN with that prior on the synthetic Aff-Wild2                     -> RUNS/pasn
# Each stage's workdir is its cache: run again, a finished stage only evaluates (and prints its metric).
#
#   launch/demo.sh [RUNS] [--config.KEY=VALUE ...]     (RUNS defaults to runs/demo; PYTHON picks the interpreter)
#
# Options after RUNS go to every stage (e.g. --config.data.synthetic.cache_dir=DIR).
set -euo pipefail
RUNS=${1:-runs/demo}
[[ $# -gt 0 ]] && shift
PYTHON=${PYTHON:-python3}
cd "$(dirname "$0")/.."

echo "== stage 1 of 3: face identity (f_id) -> $RUNS/face_id"
"$PYTHON" -m pasn_jax.main --config=configs/face_id.py:demo --workdir="$RUNS/face_id" "$@"
echo "== stage 2 of 3: DLN (Emb = f_expr - f_id) -> $RUNS/dln"
"$PYTHON" -m pasn_jax.main --config=configs/dln.py:demo --workdir="$RUNS/dln" \
    --config.model.weights.f_id="$RUNS/face_id" "$@"
echo "== stage 3 of 3: PASN with the trained prior -> $RUNS/pasn"
"$PYTHON" -m pasn_jax.main --config=configs/abaw.py:demo --workdir="$RUNS/pasn" \
    --config.model.prior_from="$RUNS/dln" "$@"
