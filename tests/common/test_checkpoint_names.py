"""Checkpoint name table: shapes from the spec, the mapping onto adapter parameters, and its errors."""

import pytest
import torch

from longcat_common.checkpoint import (MTP_EMBEDDING, CheckpointChecker, ParamTarget, expected_tensors,
                                        mtp_param_target, param_target)
from longcat_common.config import LongcatConfig

from .test_config import CHAT

FP8 = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [128, 128]}


def test_chat_shapes_from_the_spec():
    t = expected_tensors(LongcatConfig.from_dict({**CHAT, "quantization_config": FP8}), include_mtp=True)
    p = "model.layers.27"
    assert t[f"{p}.self_attn.1.kv_b_proj.weight"] == (16384, 512)
    assert t[f"{p}.self_attn.0.kv_a_proj_with_mqa.weight_scale_inv"] == (5, 48)
    assert t[f"{p}.mlp.experts.511.gate_proj.weight_scale_inv"] == (16, 48)
    assert t[f"{p}.mlp.experts.511.down_proj.weight_scale_inv"] == (48, 16)
    assert t[f"{p}.mlp.router.classifier.weight"] == (768, 6144)
    assert f"{p}.mlp.router.classifier.weight_scale_inv" not in t and "lm_head.weight_scale_inv" not in t
    assert f"{p}.mlp.experts.512.gate_proj.weight" not in t  # zero experts have no weights
    assert t["model.mtp.layers.0.eh_proj.weight"] == (6144, 12288)
    assert t["model.mtp.layers.0.enorm.m.weight"] == (6144,)
    assert "model.mtp.layers.0.transformer_layer.mlp.down_proj.weight_scale_inv" in t


def test_disable_quant_module_keeps_modules_unquantised():
    c = LongcatConfig.from_dict({**CHAT, "num_layers": 1, "quantization_config": FP8,
                                 "disable_quant_module": ["self_attn", "mtp"]})
    t = expected_tensors(c, include_mtp=True)
    assert "model.layers.0.self_attn.0.q_a_proj.weight_scale_inv" not in t
    assert "model.layers.0.mlps.0.gate_proj.weight_scale_inv" in t
    assert not any(n.startswith("model.mtp.") and n.endswith("_scale_inv") for n in t)


@pytest.mark.parametrize("name, target", [
    ("model.layers.3.self_attn.1.q_a_proj.weight", ParamTarget("model.layers.3.self_attn.1.fused_qkv_a_proj.weight", 0)),
    ("model.layers.3.self_attn.0.kv_a_proj_with_mqa.weight_scale_inv",
     ParamTarget("model.layers.3.self_attn.0.fused_qkv_a_proj.weight_scale_inv", 1)),
    ("model.layers.0.mlps.1.up_proj.weight", ParamTarget("model.layers.0.mlps.1.gate_up_proj.weight", 1)),
    ("model.layers.0.mlp.experts.7.up_proj.weight", ParamTarget("model.layers.0.mlp.experts.w13_weight", "w3", 7)),
    ("model.layers.0.mlp.experts.7.down_proj.weight_scale_inv",
     ParamTarget("model.layers.0.mlp.experts.w2_weight_scale_inv", "w2", 7)),
    ("model.layers.0.self_attn.0.kv_b_proj.weight", ParamTarget("model.layers.0.self_attn.0.kv_b_proj.weight")),
    ("model.layers.0.mlp.router.classifier.weight", ParamTarget("model.layers.0.mlp.router.classifier.weight")),
])
def test_param_target(name, target):
    assert param_target(name) == target


def test_every_checkpoint_tensor_maps_to_one_slot():
    """Round trip: distinct checkpoint tensors never collide on the same (param, shard, expert)."""
    c = LongcatConfig.from_dict({**CHAT, "num_layers": 2, "quantization_config": FP8})
    names = expected_tensors(c)
    targets = {param_target(n) for n in names}
    assert len(targets) == len(names)
    params = {t.param for t in targets}
    assert "model.layers.1.mlp.experts.w13_weight_scale_inv" in params
    assert not any(".q_a_proj." in p or ".gate_proj." in p or ".experts.3." in p for p in params)


def _tiny():
    return LongcatConfig.from_dict({**CHAT, "num_layers": 1, "hidden_size": 64, "n_routed_experts": 2,
                                    "zero_expert_num": 1, "moe_topk": 2, "vocab_size": 32, "num_attention_heads": 2})


def test_checker_names_wrong_shape_unexpected_and_missing_tensors():
    c = _tiny()
    full = {n: torch.zeros(s) for n, s in expected_tensors(c).items()}
    assert len(list(CheckpointChecker(c)(iter(full.items())))) == len(full)
    bad = dict(full, **{"model.layers.0.mlp.experts.1.up_proj.weight": torch.zeros(2048, 32)})
    with pytest.raises(ValueError, match=r"'model.layers.0.mlp.experts.1.up_proj.weight' has shape \(2048, 32\), "
                                         r"the config expects \(2048, 64\)"):
        list(CheckpointChecker(c)(iter(bad.items())))
    with pytest.raises(ValueError, match="unexpected tensor 'model.layers.0.mlp.experts.2.up_proj.weight'"):
        list(CheckpointChecker(c)(iter({**full, "model.layers.0.mlp.experts.2.up_proj.weight": torch.zeros(1)}.items())))
    missing = {n: t for n, t in full.items() if "e_score_correction_bias" not in n}
    with pytest.raises(ValueError, match="missing tensors.*model.layers.0.mlp.router.e_score_correction_bias"):
        list(CheckpointChecker(c)(iter(missing.items())))
    mtp = {**full, "model.mtp.norm.weight": torch.zeros(64)}
    assert "model.mtp.norm.weight" not in dict(CheckpointChecker(c)(iter(mtp.items())))


@pytest.mark.parametrize("name, target", [
    ("model.mtp.layers.0.eh_proj.weight", ParamTarget("model.layers.0.eh_proj.weight")),
    ("model.mtp.layers.0.enorm.m.weight", ParamTarget("model.layers.0.enorm.weight")),
    ("model.mtp.layers.0.hnorm.m.weight", ParamTarget("model.layers.0.hnorm.weight")),
    ("model.mtp.layers.0.self_attn.kv_a_proj_with_mqa.weight_scale_inv",
     ParamTarget("model.layers.0.self_attn.fused_qkv_a_proj.weight_scale_inv", 1)),
    ("model.mtp.layers.0.transformer_layer.mlp.up_proj.weight", ParamTarget("model.layers.0.mlp.gate_up_proj.weight", 1)),
    ("model.mtp.layers.0.transformer_layer.mlp.down_proj.weight", ParamTarget("model.layers.0.mlp.down_proj.weight")),
    ("model.mtp.norm.weight", ParamTarget("model.norm.weight")),
    ("model.mtp.embed_tokens.weight", ParamTarget("model.embed_tokens.weight")),
])
def test_mtp_param_target(name, target):
    assert mtp_param_target(name) == target


def test_every_mtp_tensor_maps_to_one_slot():
    c = LongcatConfig.from_dict({**CHAT, "num_layers": 1, "quantization_config": FP8})
    names = [n for n in expected_tensors(c, include_mtp=True) if n.startswith("model.mtp.")]
    assert len({mtp_param_target(n) for n in names}) == len(names)


def test_mtp_checker_takes_only_the_mtp_layer_and_names_its_errors():
    c = LongcatConfig.from_dict({**_tiny().__dict__, "num_nextn_predict_layers": 1})
    full = {n: torch.zeros(s) for n, s in expected_tensors(c, include_mtp=True).items()}
    mtp = {n for n in full if n.startswith("model.mtp.")}
    assert {n for n, _ in CheckpointChecker(c, mtp=True)(iter(full.items()))} == mtp
    shared = {n: t for n, t in full.items() if n != MTP_EMBEDDING}  # the draft then shares the target's
    assert len(list(CheckpointChecker(c, mtp=True)(iter(shared.items())))) == len(mtp) - 1
    bad = dict(full, **{"model.mtp.layers.0.eh_proj.weight": torch.zeros(64, 64)})
    with pytest.raises(ValueError, match=r"\(MTP layer\): tensor 'model.mtp.layers.0.eh_proj.weight' has shape "
                                         r"\(64, 64\), the config expects \(64, 128\)"):
        list(CheckpointChecker(c, mtp=True)(iter(bad.items())))
    missing = {n: t for n, t in full.items() if "hnorm" not in n}
    with pytest.raises(ValueError, match=r"\(MTP layer\): missing tensors \['model.mtp.layers.0.hnorm.m.weight'\]"):
        list(CheckpointChecker(c, mtp=True)(iter(missing.items())))
    with pytest.raises(ValueError, match="num_nextn_predict_layers=0: this checkpoint has no MTP layer"):
        CheckpointChecker(LongcatConfig.from_dict({**c.__dict__, "num_nextn_predict_layers": 0}), mtp=True)
