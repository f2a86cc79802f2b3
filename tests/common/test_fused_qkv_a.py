"""fuse_qkv_a: the q_a / kv_a checkpoint tensors stacked into SGLang's one fused_qkv_a_proj."""

import pytest
import torch

from longcat_common.checkpoint import ParamTarget
from longcat_common.config import LongcatConfig
from longcat_common.fp8 import dequantize_block_fp8, quantize_block_fp8
from longcat_common.loading import check_fused_qkv_a_blocks, fuse_qkv_a
from longcat_common.testing.tiny import FP8_QUANTIZATION_CONFIG, hub_config

ATTN = "model.layers.0.self_attn.1"


def _config(fp8: bool, **changes) -> LongcatConfig:
    raw = {**hub_config("tiny", vocab_size=64), **changes}
    if fp8:
        raw["quantization_config"] = FP8_QUANTIZATION_CONFIG
    return LongcatConfig.from_dict(raw)


def _stream(parts):
    """(q_a, kv_a) tensors per parameter kind -> targets as checkpoint_targets gives them, kv_a first once."""
    yield ParamTarget("model.norm.weight"), torch.ones(3)
    for kind, (q_a, kv_a) in parts.items():
        yield ParamTarget(f"{ATTN}.fused_qkv_a_proj.{kind}", 1), kv_a
        yield ParamTarget(f"{ATTN}.o_proj.{kind}"), torch.zeros(2)
        yield ParamTarget(f"{ATTN}.fused_qkv_a_proj.{kind}", 0), q_a


def test_fp8_weights_and_scales_stack_in_q_kv_order_and_dequantise_as_the_parts():
    config = _config(fp8=True)
    q_a, q_scale = quantize_block_fp8(torch.randn(config.q_lora_rank, config.hidden_size))
    kv_a, kv_scale = quantize_block_fp8(torch.randn(config.kv_lora_rank + config.qk_rope_head_dim,
                                                    config.hidden_size))
    out = dict(fuse_qkv_a(config, _stream({"weight": (q_a, kv_a), "weight_scale_inv": (q_scale, kv_scale)})))

    weight = out[ParamTarget(f"{ATTN}.fused_qkv_a_proj.weight")]
    scale = out[ParamTarget(f"{ATTN}.fused_qkv_a_proj.weight_scale_inv")]
    assert torch.equal(weight.view(torch.uint8), torch.cat([q_a, kv_a]).view(torch.uint8))
    assert torch.equal(scale, torch.cat([q_scale, kv_scale]))
    torch.testing.assert_close(dequantize_block_fp8(weight, scale, dtype=torch.float32),
                               torch.cat([dequantize_block_fp8(q_a, q_scale, dtype=torch.float32),
                                          dequantize_block_fp8(kv_a, kv_scale, dtype=torch.float32)]),
                               rtol=0, atol=0)
    assert ParamTarget(f"{ATTN}.o_proj.weight") in out and ParamTarget("model.norm.weight") in out
    assert len(out) == 5, "the shards come out once, fused"


def test_bf16_weights_stack_without_scales():
    config = _config(fp8=False, q_lora_rank=96)  # no FP8: any q_lora_rank
    q_a, kv_a = torch.randn(96, config.hidden_size), torch.randn(576, config.hidden_size)
    out = dict(fuse_qkv_a(config, _stream({"weight": (q_a, kv_a)})))
    assert torch.equal(out[ParamTarget(f"{ATTN}.fused_qkv_a_proj.weight")], torch.cat([q_a, kv_a]))


def test_fp8_q_lora_rank_off_the_block_is_refused_naming_the_field():
    config = _config(fp8=True, q_lora_rank=96)
    with pytest.raises(ValueError, match="q_lora_rank 96 is not a multiple of the FP8 block height 128"):
        check_fused_qkv_a_blocks(config)
    scales = (torch.ones(1, 2), torch.ones(5, 2))
    with pytest.raises(ValueError, match="q_lora_rank 96"):
        list(fuse_qkv_a(config, _stream({"weight_scale_inv": scales})))
    check_fused_qkv_a_blocks(_config(fp8=True, q_lora_rank=96, disable_quant_module=["self_attn"]))
