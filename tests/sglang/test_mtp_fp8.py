"""The Chat-FP8 checkpoint layout served by SGLang on the CPU with LongCat's official NEXTN flags, bf16,
against the oracle and the reference on its dequantised weights: target and draft in one server.

Off CUDA there are no block-FP8 kernels: the model drops SGLang's fp8 quant config and dequantises each
e4m3 weight with its 128x128 ``weight_scale_inv`` to bf16 at load (common/fp8.py), so the served model
is the bf16 model of the dequantised weights and the bf16 tolerance of tests/sglang/parity.py applies.
The checkpoint is the draft preset's (FFN 416, expert FFN 96, q_lora 96: not multiples of the block):
for a block-FP8 checkpoint SGLang pads the intermediate sizes to multiples of 128 even at TP=1
(adjust_config_with_unaligned_cpu_tp), so this is also the padded-sizes case of issue 9 (FP8, TP=1).
The draft's logits stay within bf16 noise of the reference. (Greedy tokens with NEXTN are the target's
greedy tokens: verify keeps only what the target picks.)
"""

import json

import pytest
import torch

from tests import oracle
from tests.common import reference_forward as ref
from tests.sglang.mtp_checks import DRAFT_ACTIVE, capturing_server, nextn_args, served_draft_rows
from tests.sglang.parity import Gap, check_prompt_logprobs, greedy_matches, reference_and_tolerance


@pytest.fixture(scope="module")
def server(draft_fp8_ckpt, tmp_path_factory):
    args = nextn_args(draft_fp8_ckpt, "bfloat16")
    with capturing_server(draft_fp8_ckpt, tmp_path_factory.mktemp("sglang-nextn-fp8"), args) as s:
        yield s


def test_fp8_draft_in_bf16_within_bf16_noise(server, draft_fp8_ckpt, prompt_ids):
    """The log-prob each draft row gives the token it should predict, against the fp32 reference on the
    dequantised weights, within twice transformers' own bf16-vs-fp32 gap on the target model
    (tests/sglang/parity.py)."""
    assert f"{DRAFT_ACTIVE} (device cpu, tp 1, fp8 dequantised to bf16" in server.log()
    cfg, w = ref.load_checkpoint(draft_fp8_ckpt)
    served, want, targets = served_draft_rows(server, cfg, w, prompt_ids[3:5])
    rows = torch.arange(len(targets))
    gap = Gap.between([torch.log_softmax(served, -1)[rows, targets].tolist()],
                      [torch.log_softmax(want, -1)[rows, targets].tolist()])
    _, tol = reference_and_tolerance(draft_fp8_ckpt, prompt_ids[3:5])
    print(f"draft log-probs (bf16 server, FP8 checkpoint) vs fp32 reference, {len(rows)} rows: {gap}; "
          f"tolerance {tol}")
    assert len(rows) >= 8
    assert gap.within(tol)


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
