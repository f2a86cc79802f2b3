"""LongcatConfig: the real LongCat-Flash-Chat values, aliases, derived figures, and clear errors."""

import math

import pytest

from longcat_common.config import LongcatConfig

CHAT = {  # meituan-longcat/LongCat-Flash-Chat config.json (no model_type, as on the Hub)
    "architectures": ["LongcatFlashForCausalLM"], "vocab_size": 131072, "hidden_size": 6144, "num_layers": 28,
    "num_attention_heads": 64, "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64, "v_head_dim": 128, "ffn_hidden_size": 12288, "expert_ffn_hidden_size": 2048,
    "n_routed_experts": 512, "zero_expert_num": 256, "zero_expert_type": "identity", "moe_topk": 12,
    "routed_scaling_factor": 6.0, "router_bias": False, "norm_topk_prob": False, "mla_scale_q_lora": True,
    "mla_scale_kv_lora": True, "rope_theta": 10000000.0, "max_position_embeddings": 131072, "rms_norm_eps": 1e-5,
    "attention_bias": False, "hidden_act": "silu", "tie_word_embeddings": False, "bos_token_id": 1,
    "eos_token_id": 2, "num_nextn_predict_layers": 1,
}


def test_chat_parameter_counts_match_the_paper():
    c = LongcatConfig.from_dict(CHAT)
    assert round(c.total_params() / 1e9) == 561  # "560B"
    assert c.activated_params(0) / 1e9 == pytest.approx(18.6, abs=0.1)
    assert c.activated_params(12) / 1e9 == pytest.approx(31.3, abs=0.1)
    assert c.num_experts_total == 768 and c.num_attention_layers == 56 and c.qk_head_dim == 192
    assert c.mla_lora_scales() == pytest.approx((2.0, 12 ** 0.5))


def test_rope_theta_inside_rope_parameters_and_engine_aliases():
    raw = {k: v for k, v in CHAT.items() if k != "rope_theta"}
    raw["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e7}
    assert LongcatConfig.from_dict(raw).rope_theta == 1e7

    class EngineConfig:  # transformers-style attribute names, num_hidden_layers = 2 x num_layers
        pass
    obj = EngineConfig()
    renamed = {"n_routed_experts": "num_local_experts", "moe_topk": "num_experts_per_tok",
               "ffn_hidden_size": "intermediate_size", "expert_ffn_hidden_size": "moe_intermediate_size"}
    for k, v in CHAT.items():
        setattr(obj, renamed.get(k, k), v)
    obj.num_hidden_layers = 56
    assert LongcatConfig.from_hf(obj) == LongcatConfig.from_dict(CHAT)


@pytest.mark.parametrize("change, message", [
    ({"zero_expert_type": "const"}, "unknown zero_expert_type 'const'"),
    ({"hidden_size": None}, "required field 'hidden_size' is missing"),
    ({"n_routed_experts": None}, "required field 'n_routed_experts' is missing"),
    ({"moe_topk": 1000}, "'moe_topk' \\(1000\\) exceeds"),
    ({"num_layers": 0}, "'num_layers' must be positive"),
    ({"kv_lora_rank": 512.5}, "'kv_lora_rank' must be an integer"),
    ({"qk_rope_head_dim": 63}, "'qk_rope_head_dim' must be even"),
    ({"routed_scaling_factor": 0}, "'routed_scaling_factor' must be positive"),
    ({"norm_topk_prob": True}, "'norm_topk_prob=true' is not"),
    ({"rope_scaling": {"type": "longrope", "factor": 4}}, "rope scaling type 'longrope'"),
    ({"rope_scaling": {"type": "yarn", "factor": 4}}, "yarn rope scaling needs 'original_max_position_embeddings'"),
    ({"rope_scaling": {"type": "yarn", "original_max_position_embeddings": 8192}}, "yarn rope scaling needs 'factor'"),
    ({"ngram_vocab_size_ratio": 78}, r"'ngram_vocab_size_ratio' is set but \['emb_neighbor_num', 'emb_split_num'\]"),
    ({"index_topk": 2048}, "'index_topk' \\(sparse"),
    ({"disable_quant_module": ["experts"]}, "unknown 'disable_quant_module'"),
])
def test_bad_config_names_the_field(change, message):
    raw = {k: v for k, v in {**CHAT, **change}.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        LongcatConfig.from_dict(raw)


def test_thinking_2601_yarn_config():
    """LongCat-Flash-Thinking-2601: architecture LongcatCausalLM, DeepSeek-style YaRN rope_scaling."""
    yarn = {"type": "yarn", "factor": 32.0, "original_max_position_embeddings": 8192, "beta_fast": 32,
            "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}
    c = LongcatConfig.from_dict({**CHAT, "architectures": ["LongcatCausalLM"], "rope_scaling": yarn})
    assert c.rope_scaling == {"factor": 32.0, "original_max_position_embeddings": 8192, "beta_fast": 32.0,
                              "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0}
    assert c.softmax_scale() == pytest.approx(192 ** -0.5 * (0.1 * math.log(32.0) + 1) ** 2)
    # transformers' spelling of the same thing, and vLLM's in-place rename of the type
    for params in ({**yarn, "rope_type": "yarn", "rope_theta": 1e7}, {**yarn, "rope_type": "deepseek_yarn"}):
        raw = {k: v for k, v in CHAT.items() if k != "rope_scaling"}
        assert LongcatConfig.from_dict({**raw, "rope_parameters": params}).rope_scaling == c.rope_scaling
    assert LongcatConfig.from_dict(CHAT).rope_scaling is None
    assert LongcatConfig.from_dict(CHAT).softmax_scale() == 192 ** -0.5


def test_unsupported_quantization_is_named():
    c = LongcatConfig.from_dict({**CHAT, "quantization_config": {"quant_method": "awq", "bits": 4}})
    with pytest.raises(ValueError, match="unsupported quantization_config.*awq"):
        c.fp8_block_size()
    fp8 = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [128, 128]}
    assert LongcatConfig.from_dict({**CHAT, "quantization_config": fp8}).fp8_block_size() == (128, 128)


@pytest.mark.parametrize("fields, reason", [
    ({"oe_vocab_size_ratio": 78, "oe_neighbor_num": 4, "oe_split_num": 4, "index_topk": 2048},
     "index_topk (sparse (indexer) attention)"),
    ({"index_topk": 2048}, "index_topk (sparse (indexer) attention)"),
])
def test_unsupported_variants_are_named_from_dicts_and_config_objects(fields, reason):
    from types import SimpleNamespace

    from longcat_common.config import unsupported_features, unsupported_reason

    raw = {**CHAT, **fields}
    assert unsupported_reason(raw).startswith(reason)
    assert unsupported_reason(SimpleNamespace(**raw)) == unsupported_reason(raw)
    assert set(unsupported_features(raw)) == {"index_topk"}
    with pytest.raises(ValueError, match="'index_topk'.*not supported"):
        LongcatConfig.from_dict(raw)


def test_served_configs_have_no_unsupported_reason():
    from longcat_common.config import unsupported_reason

    assert unsupported_reason(CHAT) is None
    assert unsupported_reason({**CHAT, "index_topk": None}) is None
    assert unsupported_reason({**CHAT, "ngram_vocab_size_ratio": 78, "emb_neighbor_num": 4, "emb_split_num": 4}) is None
