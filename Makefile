# make test  : every test session (engine-free, vLLM, SGLang), building the cached envs when missing
# make demo  : serve a generated tiny LongCat-Flash checkpoint with vLLM + this plugin and chat with it
.PHONY: test test-common test-vllm test-sglang demo

test: test-common test-vllm test-sglang

test-common:
	"$$(scripts/venv.sh common)/bin/python" -m pytest -q tests/common

test-vllm:
	"$$(scripts/venv.sh vllm)/bin/python" -m pytest -q tests/vllm

test-sglang:
	"$$(scripts/venv.sh sglang)/bin/python" -m pytest -q tests/sglang

demo:
	cd examples && "$$(../scripts/venv.sh vllm)/bin/python" vllm_demo.py
