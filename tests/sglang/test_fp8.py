"""The Chat-FP8 checkpoint layout served by SGLang on the CPU, against the oracle on its dequantised weights.

Off CUDA there are no block-FP8 kernels: the model drops SGLang's fp8 quant config and dequantises each
e4m3 weight with its 128x128 ``weight_scale_inv`` to bf16 at load (common/fp8.py), so the served model
is the bf16 model of the dequantised weights and the bf16 tolerance of tests/sglang/parity.py applies.
The checkpoint is the draft preset's (FFN 416, expert FFN 96, q_lora 96: not multiples of the block):
for a block-FP8 checkpoint SGLang pads the intermediate sizes to multiples of 128 even at TP=1
(adjust_config_with_unaligned_cpu_tp), so this is also the padded-sizes case of issue 9 (FP8, TP=1).
"""

import json

import pytest

from tests import oracle
from tests.sglang.parity import check_prompt_logprobs, greedy_matches
from tests.sglang.server import sglang_server


@pytest.fixture(scope="module")
def server(draft_fp8_ckpt, tmp_path_factory):
    with sglang_server(draft_fp8_ckpt, tmp_path_factory.mktemp("sglang-fp8") / "server.log") as s:
        yield s


def test_checkpoint_is_block_fp8(draft_fp8_ckpt):
    config = json.loads((draft_fp8_ckpt / "config.json").read_text())
    assert config["quantization_config"]["weight_block_size"] == [128, 128]
    index = json.loads((draft_fp8_ckpt / "model.safetensors.index.json").read_text())["weight_map"]
    assert "model.layers.0.mlp.experts.0.gate_proj.weight_scale_inv" in index


def test_fp8_weights_are_dequantised_at_load_into_padded_layers(server):
    assert ("fp8 dequantised to bf16, padded by SGLang: ffn_hidden_size 416->512, expert_ffn_hidden_size 96->128"
            in server.log())


def test_prompt_logprobs_match_oracle_on_dequantised_weights(server, draft_fp8_ckpt, prompt_ids):
    check_prompt_logprobs(server, draft_fp8_ckpt, prompt_ids, "FP8 checkpoint")


def test_greedy_matches_oracle_where_margin_is_clear(server, draft_fp8_ckpt, prompt_ids):
    compared = greedy_matches(server, oracle.load_oracle(draft_fp8_ckpt), prompt_ids[:3], 6)
    assert compared >= 6
