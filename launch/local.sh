#!/usr/bin/env bash
# Runs N processes of pasn_jax.main on this machine the way a multi-host job runs: process 0 is the
# coordinator on 127.0.0.1, CPU collectives (gloo) connect them, each process reads only its share of the data.
#
#   XLA_FLAGS=--xla_force_host_platform_device_count=2 launch/local.sh 2 \
#       --config=configs/abaw.py:smoke --workdir=/tmp/pasn_2x2
#
# Every argument after N goes to each process. PYTHON picks the interpreter (default: python3), PORT the
# coordinator port (default: a free one). Output lines are prefixed with [pI]. Exits with the first non-zero
# status of any process, after stopping the others.
set -euo pipefail
if [[ $# -lt 1 || ! "$1" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: launch/local.sh N --config=... --workdir=... [flags]  (N: number of processes)" >&2
  exit 2
fi
N=$1; shift
PYTHON=${PYTHON:-python3}
PORT=${PORT:-$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
cd "$(dirname "$0")/.."

pids=()
for ((i = 0; i < N; i++)); do
  "$PYTHON" -m pasn_jax.main --coordinator_address="127.0.0.1:$PORT" --num_processes="$N" --process_id="$i" "$@" \
      > >(sed -u "s/^/[p$i] /") 2>&1 &
  pids+=($!)
done

status=0
while [[ ${#pids[@]} -gt 0 ]]; do
  rc=0
  wait -n -p finished "${pids[@]}" || rc=$?
  rest=()
  for pid in "${pids[@]}"; do [[ $pid == "$finished" ]] || rest+=("$pid"); done
  pids=("${rest[@]}")
  if [[ $rc -ne 0 ]]; then
    status=$rc
    kill "${pids[@]}" 2>/dev/null || true
    break
  fi
done
wait
exit $status
