#!/usr/bin/env bash
# One-script GPU benchmark for a lent H200: bfloat16 PASN training steps (the product's pasn_jax.train.train_step)
# at the paper's batch 80 and larger, the towers alone, and PASN inference; prints images/s and MFU (model FLOPs
# counted from the jaxpr / time / the H200's dense bf16 peak, 989 TFLOP/s, override with PEAK_TFLOPS).
#
#   bash benchmarks/gpu.sh             # on the GPU machine (needs jax with CUDA: jax[cuda12]==0.10.2)
#   bash benchmarks/gpu.sh --dry-run   # the same commands at tiny sizes on the CPU, to check the script
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
PEAK_TFLOPS=${PEAK_TFLOPS:-989}

if [[ "${1:-}" == "--dry-run" ]]; then
  CASES_TRAIN=(iresnet18@32); CASES_INFER=(iresnet18@32); BATCHES=(4); TIMING=(--pairs 1 --steps 1 --retries 0)
else
  if ! "$PY" -c "import jax, sys; sys.exit(jax.devices()[0].platform != 'gpu')" 2>/dev/null; then
    echo "benchmarks/gpu.sh: jax sees no GPU; install jax[cuda12]==0.10.2 on the GPU machine, or run with --dry-run" >&2
    exit 1
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  CASES_TRAIN=(iresnet50@112 iresnet50@224 resnet50@224); CASES_INFER=(iresnet50@112 iresnet50@224)
  BATCHES=(80 160 320); TIMING=(--pairs 3 --steps 10 --retries 0)
fi

COMMON=(--dtype bfloat16 --peak-tflops "$PEAK_TFLOPS" "${TIMING[@]}")
echo "== PASN train step (multitask loss, SGD): bfloat16, batch ${BATCHES[*]}"
"$PY" -m benchmarks.train_step --model pasn --cases "${CASES_TRAIN[@]}" --batch "${BATCHES[@]}" "${COMMON[@]}"
echo "== towers alone (mean-square loss on the embedding, SGD)"
"$PY" -m benchmarks.train_step --model tower --cases "${CASES_TRAIN[@]}" --batch "${BATCHES[@]}" "${COMMON[@]}"
echo "== PASN inference"
"$PY" -m benchmarks.inference --cases "${CASES_INFER[@]}" --batch "${BATCHES[@]}" "${COMMON[@]}"
