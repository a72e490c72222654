#!/usr/bin/env bash
# One GPU check in one short call (a lent H200, ~8 minutes of device time with a cold compilation cache): bfloat16
# PASN training steps (the product's pasn_jax.train.train_step) at the paper's batch 80 and at 256 against the PyTorch
# reference on the same GPU, the same step at batch 80 with XLA:CPU's kernels (model.kernels=cpu: the sub-pixel
# stride-2 gradient, the strided 1x1 as a matmul, the fusion boundary) against the portable ones (plain lax, what
# 'auto' takes on a GPU), the towers alone at batch 80, PASN inference at 256, then the end-to-end training
# throughput of `python -m pasn_jax.main` (the paper's config at 224 px on rendered synthetic data, automatic input
# workers) beside the step-only figure. Prints every line and writes every figure to one JSON file (OUT_JSON,
# default gpu.json): {"machine", "cases": [one record per measured case], "end_to_end": {...}}. MFU is model FLOPs
# counted from the jaxpr / time / the H200's dense bf16 peak, 989 TFLOP/s (override with PEAK_TFLOPS). Compiles are
# kept in JAX's persistent cache (JAX_COMPILATION_CACHE_DIR, default ~/.cache/pasn_jax/xla-gpu): a rerun skips them.
#
#   bash benchmarks/gpu.sh             # on the GPU machine (needs jax with CUDA: jax[cuda12]==0.10.2)
#   bash benchmarks/gpu.sh --dry-run   # the same commands at tiny sizes in float32 on the CPU, to check the script
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
PEAK_TFLOPS=${PEAK_TFLOPS:-989}
OUT_JSON=${OUT_JSON:-gpu.json}
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$HOME/.cache/pasn_jax/xla-gpu}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if [[ "${1:-}" == "--dry-run" ]]; then
  PASN=(--cases iresnet18@32 --batch 8); TOWERS=(--cases iresnet18@32 --batch 4); INFER=(--cases iresnet18@32 --batch 4)
  CPU_KERNELS=(--cases iresnet18@32 --batch 8)
  TORCH=(); TIMING=(--pairs 1 --steps 1 --retries 0); DTYPE=float32  # bfloat16 compiles and runs slowly on a CPU
  MAIN=(--config=configs/abaw.py:smoke --config.num_steps=6 --config.log_every=2)
else
  if ! "$PY" -c "import jax, sys; sys.exit(jax.devices()[0].platform != 'gpu')" 2>/dev/null; then
    echo "benchmarks/gpu.sh: jax sees no GPU; install jax[cuda12]==0.10.2 on the GPU machine, or run with --dry-run" >&2
    exit 1
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  PASN=(--cases iresnet50@224 --batch 80 256); TOWERS=(--cases iresnet50@224 resnet50@224 --batch 80)
  CPU_KERNELS=(--cases iresnet50@224 --batch 80)
  INFER=(--cases iresnet50@224 --batch 256); TORCH=(--vs-torch); TIMING=(--pairs 3 --steps 10 --retries 0)
  DTYPE=bfloat16
  MAIN=(--config=configs/abaw.py --config.data.source=synthetic --config.data.synthetic.size=224
        --config.data.synthetic.videos=16 --config.data.synthetic.frames=100 --config.num_steps=300
        --config.log_every=50)
fi

COMMON=(--dtype "$DTYPE" --peak-tflops "$PEAK_TFLOPS" --json "$WORK/cases.jsonl" "${TIMING[@]}")
echo "== PASN train step (multitask loss, SGD), portable kernels: $DTYPE ${PASN[*]}"
"$PY" -m benchmarks.train_step --model pasn --kernels portable "${PASN[@]}" "${TORCH[@]}" "${COMMON[@]}"
echo "== the same step with XLA:CPU's kernels (model.kernels=cpu), against the portable ones above ${CPU_KERNELS[*]}"
"$PY" -m benchmarks.train_step --model pasn --kernels cpu "${CPU_KERNELS[@]}" "${COMMON[@]}"
echo "== towers alone (mean-square loss on the embedding, SGD) ${TOWERS[*]}"
"$PY" -m benchmarks.train_step --model tower "${TOWERS[@]}" "${TORCH[@]}" "${COMMON[@]}"
echo "== PASN inference ${INFER[*]}"
"$PY" -m benchmarks.inference "${INFER[@]}" "${COMMON[@]}"
echo "== end to end: python -m pasn_jax.main ${MAIN[*]}"
"$PY" -m pasn_jax.main "${MAIN[@]}" --workdir="$WORK/run" --config.eval_every=1000000 \
    --config.checkpoint_every=1000000 --config.data.synthetic.cache_dir="$WORK/cache" | tee "$WORK/main.log"

"$PY" - "$WORK/cases.jsonl" "$WORK/main.log" "$OUT_JSON" <<'EOF'
import json, os, re, statistics, sys
from benchmarks import common
from pasn_jax.models.layers import resolve_kernels
cases_file, log_file, out = sys.argv[1:]
cases = [json.loads(line) for line in open(cases_file)]
log = open(log_file).read()
rates = [float(r) for r in re.findall(r"\| ([0-9.]+) img/s \|", log)]  # one per logged interval
batch = re.search(r"global batch (\d+)", log)
steady = rates[1:] or rates  # the first interval holds the compile
end_to_end = {"img_per_s": statistics.median(steady) if steady else None, "intervals_img_per_s": rates,
              "global_batch": int(batch.group(1)) if batch else None}
step = [c for c in cases if " pasn " in c["case"] and c["batch"] == end_to_end["global_batch"]
        and c.get("kernels") == resolve_kernels("auto")]  # the kernels main ran with
if step and end_to_end["img_per_s"]:
    end_to_end["fraction_of_step_only"] = end_to_end["img_per_s"] / step[0]["img_per_s"]
with open(out + ".tmp", "w") as f:
    json.dump({"machine": common.machine(), "cases": cases, "end_to_end": end_to_end}, f, indent=1)
os.replace(out + ".tmp", out)
print(f"end to end {end_to_end}; {len(cases)} cases -> {out}")
EOF
