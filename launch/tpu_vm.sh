#!/usr/bin/env bash
# Training on a Cloud TPU VM slice: the same command on every worker of the slice (jax.distributed discovers the
# TPU pod topology itself with --distributed), run from your machine with gcloud.
#
#   launch/tpu_vm.sh TPU_NAME ZONE --config=configs/abaw.py --workdir=gs://BUCKET/runs/abaw \
#       --config.data.dir=gs://BUCKET/affwild2_shards
#
# The repository must be at the same path on every worker (cloned there, e.g. by a startup script); the workdir and
# the shards on storage every worker sees: a bucket (gs://, as above; tests/test_gcs.py runs this command shape
# against a GCS emulator) or a shared disk mounted at the same path. Global batch: config.batch_size over all TPU
# cores (a v4-32 slice has 16 chips: use a multiple of 16). Install first on every worker:
#   pip install -r requirements-tpu.txt -r requirements-gcs.txt
set -euo pipefail
if [[ $# -lt 3 ]]; then
  echo "usage: launch/tpu_vm.sh TPU_NAME ZONE --config=... --workdir=... [flags]" >&2
  exit 2
fi
TPU=$1 ZONE=$2
shift 2
REPO=${REPO:-pasn_jax}
ARGS=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" --worker=all \
    --command="cd $REPO && python3 -m pasn_jax.main --distributed$ARGS"
