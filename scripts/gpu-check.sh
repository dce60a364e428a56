#!/usr/bin/env bash
# The KV-cache chapter's GPU measurements, for a machine with a CUDA GPU and torch
# but no Jupyter (a lent GPU box): runs the GPU tests, then the benchmark, which
# rewrites the "KV cache measurements" section of BENCHMARKS.md with the figures of
# that GPU (allocator bytes, copy bandwidth, decode-attention bandwidth).
# Usage: bash scripts/gpu-check.sh [python]     ($OUT, if set, receives BENCHMARKS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # the helper package, uninstalled
"$PY" -c "import torch, sys; ok = torch.cuda.is_available(); print('torch', torch.__version__, '|', torch.cuda.get_device_name(0) if ok else 'no CUDA GPU'); sys.exit(0 if ok else 'gpu-check needs a CUDA GPU visible to torch')"
"$PY" -m pytest -q -p no:cacheprovider -m gpu tests/kvcache/test_attention.py tests/kvcache/test_measure.py
"$PY" scripts/bench_kvcache.py
if [ -n "${OUT:-}" ]; then cp BENCHMARKS.md "$OUT/"; fi
