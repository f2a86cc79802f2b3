# make test  : every test session (engine-free, vLLM, vLLM 0.33's Python, SGLang), building the cached envs when missing
# make demo  : serve a generated tiny LongCat-Flash checkpoint with vLLM + this plugin and chat with it
.PHONY: test test-common test-vllm test-vllm-next test-sglang demo

test: test-common test-vllm test-vllm-next test-sglang

test-common:
	"$$(scripts/venv.sh common)/bin/python" -m pytest -q tests/common

test-vllm:
	"$$(scripts/venv.sh vllm)/bin/python" -m pytest -q tests/vllm

# vLLM 0.33's own Python (CUDA wheel, no CUDA libraries): envs/vllm-next.txt is a complete list, installed without
# dependency resolution (docs/vllm-0.33.md)
test-vllm-next:
	"$$(PIP_NO_DEPS=1 scripts/venv.sh vllm-next)/bin/python" -m pytest -q tests/vllm_next

test-sglang:
	"$$(scripts/venv.sh sglang)/bin/python" -m pytest -q tests/sglang

demo:
	cd examples && "$$(../scripts/venv.sh vllm)/bin/python" vllm_demo.py
