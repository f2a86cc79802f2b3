#!/usr/bin/env bash
# Serve a LongCat-Flash checkpoint with vLLM; with longcat-flash-plugins installed, our classes serve it.
#   examples/vllm_serve.sh MODEL [PORT] [extra vllm serve args]
# On a GPU node, e.g.: examples/vllm_serve.sh meituan-longcat/LongCat-Flash-Chat-FP8 8000 \
#   --tensor-parallel-size 8 --enable-expert-parallel
# On a CPU (this repo's tests): VLLM_CPU_OMP_THREADS_BIND=0 examples/vllm_serve.sh /path/to/tiny 8000
set -euo pipefail
model=$1; port=${2:-8000}; shift $(( $# < 2 ? $# : 2 ))
exec vllm serve "$model" --host 127.0.0.1 --port "$port" --max-model-len 4096 "$@"
