"""The Chat-FP8 checkpoint layout served by SGLang on the CPU, against the oracle on its dequantised weights.

Off CUDA there are no block-FP8 kernels: the model drops SGLang's fp8 quant config and dequantises each
e4m3 weight with its 128x128 ``weight_scale_inv`` to bf16 at load (common/fp8.py), so the served model
is the bf16 model of the dequantised weights and the bf16 tolerance of tests/sglang/parity.py applies.
"""

import json

import pytest

from tests import oracle
from tests.sglang.parity import Gap, greedy_matches, reference_and_tolerance
from tests.sglang.server import sglang_server


@pytest.fixture(scope="module")
def server(tiny_fp8_ckpt, tmp_path_factory):
    with sglang_server(tiny_fp8_ckpt, tmp_path_factory.mktemp("sglang-fp8") / "server.log") as s:
        yield s


def test_checkpoint_is_block_fp8(tiny_fp8_ckpt):
    config = json.loads((tiny_fp8_ckpt / "config.json").read_text())
    assert config["quantization_config"]["weight_block_size"] == [128, 128]
    index = json.loads((tiny_fp8_ckpt / "model.safetensors.index.json").read_text())["weight_map"]
    assert "model.layers.0.mlp.experts.0.gate_proj.weight_scale_inv" in index


def test_fp8_weights_are_dequantised_at_load(server):
    assert "fp8 dequantised to bf16" in server.log()


def test_prompt_logprobs_match_oracle_on_dequantised_weights(server, tiny_fp8_ckpt, prompt_ids):
    fp32, tol = reference_and_tolerance(tiny_fp8_ckpt, prompt_ids)
    gap = Gap.between([server.prompt_logprobs(ids) for ids in prompt_ids], fp32)
    print(f"FP8 checkpoint, server bf16 vs oracle fp32 |d logprob|: {gap}")
    assert gap.within(tol)


def test_greedy_matches_oracle_where_margin_is_clear(server, tiny_fp8_ckpt, prompt_ids):
    compared = greedy_matches(server, oracle.load_oracle(tiny_fp8_ckpt), prompt_ids[:3], 6)
    assert compared >= 6
