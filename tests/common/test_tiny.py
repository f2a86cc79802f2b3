"""The random-checkpoint generator: Hub layout, shards and index, dtypes, FP8 = quantised bf16,
determinism, presets, tokenizer and chat template, CLI."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from transformers import AutoTokenizer

from longcat_common.checkpoint import checkpoint_shapes, expected_tensors
from longcat_common.config import MLA_CPU_LATENT, LongcatConfig
from longcat_common.fp8 import FP8_DTYPE, quantize_block_fp8
from longcat_common.testing.tiny import PRESETS, hub_config, write_checkpoint


def read_checkpoint(ckpt) -> tuple[dict, dict, dict[str, torch.Tensor]]:
    """(config.json, index.json, name -> tensor of every tensor in the shards)."""
    index = json.loads((ckpt / "model.safetensors.index.json").read_text())
    tensors = {}
    for file in sorted(set(index["weight_map"].values())):
        with safe_open(str(ckpt / file), framework="pt") as f:
            tensors.update((name, f.get_tensor(name)) for name in f.keys())
    return json.loads((ckpt / "config.json").read_text()), index, tensors


@pytest.mark.parametrize("which", ["tiny_ckpt", "tiny_fp8_ckpt"])
def test_layout_matches_the_hub(which, request):
    ckpt = request.getfixturevalue(which)
    raw, index, tensors = read_checkpoint(ckpt)
    assert "model_type" not in raw and raw["architectures"] == ["LongcatFlashForCausalLM"]
    config = LongcatConfig.from_dict(raw)
    assert {n: tuple(t.shape) for n, t in tensors.items()} == expected_tensors(config, include_mtp=True)

    files = set(index["weight_map"].values())
    assert len(files) >= 2 and all((ckpt / f).is_file() for f in files)
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in tensors.values())
    for file in files:  # the index says where each tensor really is
        with safe_open(str(ckpt / file), framework="pt") as f:
            assert all(index["weight_map"][n] == file for n in f.keys())

    quantised = {n for n, (_, q) in checkpoint_shapes(config).items() if q and config.quantization_config}
    for name, t in tensors.items():
        if ".mlp.router." in name or name.endswith("_scale_inv"):
            assert t.dtype == torch.float32, name
        else:
            assert t.dtype == (FP8_DTYPE if name in quantised else torch.bfloat16), name
    generation = json.loads((ckpt / "generation_config.json").read_text())
    assert generation == {"bos_token_id": 1, "eos_token_id": 2} and (raw["bos_token_id"], raw["eos_token_id"]) == (1, 2)


def test_fp8_is_the_quantised_bf16_checkpoint(tiny_ckpt, tiny_fp8_ckpt):
    raw, _, bf16 = read_checkpoint(tiny_ckpt)
    raw8, _, fp8 = read_checkpoint(tiny_fp8_ckpt)
    assert raw8.pop("quantization_config") == {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                               "weight_block_size": [128, 128]}
    assert raw8 == raw
    for name, t in bf16.items():
        if fp8[name].dtype == FP8_DTYPE:
            q, scale = quantize_block_fp8(t)
            assert torch.equal(fp8[name].view(torch.uint8), q.view(torch.uint8)), name
            assert torch.equal(fp8[name + "_scale_inv"], scale), name
        else:
            assert torch.equal(fp8[name], t), name


def test_deterministic_per_seed(tmp_path, tiny_ckpt):
    again = write_checkpoint(tmp_path / "again", seed=0)
    other = write_checkpoint(tmp_path / "other", seed=1)
    for path in sorted(p.name for p in tiny_ckpt.iterdir()):
        assert (again / path).read_bytes() == (tiny_ckpt / path).read_bytes(), path
    _, _, a = read_checkpoint(tiny_ckpt)
    _, _, b = read_checkpoint(other)
    assert not torch.equal(a["model.layers.0.mlp.experts.0.up_proj.weight"], b["model.layers.0.mlp.experts.0.up_proj.weight"])
    assert torch.equal(a["model.mtp.embed_tokens.weight"], a["model.embed_tokens.weight"])


def test_norm_weights_are_near_but_not_one(tiny_ckpt):
    _, _, tensors = read_checkpoint(tiny_ckpt)
    for name, t in tensors.items():
        if t.dim() == 1 and "router" not in name:
            assert 0.05 < (t.float() - 1).std() < 0.2 and abs(t.float().mean() - 1) < 0.05, name


def test_overrides_touch_config_json_only(tmp_path, tiny_ckpt):
    ckpt = write_checkpoint(tmp_path, overrides={"zero_expert_type": "zero", "rope_theta": None})
    raw, _, tensors = read_checkpoint(ckpt)
    assert raw["zero_expert_type"] == "zero" and "rope_theta" not in raw
    _, _, original = read_checkpoint(tiny_ckpt)
    assert tensors.keys() == original.keys() and all(torch.equal(tensors[n], original[n]) for n in tensors)


@pytest.mark.parametrize("preset", sorted(set(PRESETS) - {"odd"}))
def test_presets_fit_the_engines(preset):
    """Valid, CPU-MLA-compatible latent, hidden a multiple of 256 (the zero-expert kernel), TP/EP=2 splits.

    The draft and Lite presets are off the 256 grid on purpose (awkward sizes); our CPU paths serve them.
    The odd preset does not split over TP=2 on purpose (tests/sglang/test_padded_sizes.py)."""
    config = LongcatConfig.from_dict(hub_config(preset, vocab_size=1024))
    assert config.kv_lora_rank + config.qk_rope_head_dim == MLA_CPU_LATENT
    assert config.hidden_size % 256 == 0 or preset in ("draft", "lite", "lite-oe", "lite-draft")
    for name in ("num_attention_heads", "ffn_hidden_size", "expert_ffn_hidden_size", "n_routed_experts",
                 "zero_expert_num", "vocab_size"):
        assert getattr(config, name) % 2 == 0, name


def test_tokenizer_and_chat_template(tiny_ckpt):
    tok = AutoTokenizer.from_pretrained(tiny_ckpt)
    raw = json.loads((tiny_ckpt / "config.json").read_text())
    assert [tok.unk_token_id, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id] == [0, 1, 2, 3]
    assert (tok.bos_token, tok.eos_token) == ("<longcat_s>", "</longcat_s>")
    assert len(tok) <= raw["vocab_size"] and raw["vocab_size"] % 64 == 0
    text = "The keeper lit the lamp."
    assert tok.decode(tok(text).input_ids) == text
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "What is a cat?"}]
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt == ("SYSTEM:Be brief. [Round 0] USER:Hi ASSISTANT:Hello!</longcat_s> "
                      "[Round 1] USER:What is a cat? ASSISTANT:")
    assert tok.apply_chat_template(messages[1:2], tokenize=False, add_generation_prompt=True) == "[Round 0] USER:Hi ASSISTANT:"
    assert tok.apply_chat_template(messages[1:3], tokenize=False) == "[Round 0] USER:Hi ASSISTANT:Hello!</longcat_s>"
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert ids.count(tok.eos_token_id) == 1 and tok.bos_token_id not in ids


def test_never_predicts_unprintable_or_padded_ids(tiny_ckpt):
    tok = AutoTokenizer.from_pretrained(tiny_ckpt)
    _, _, tensors = read_checkpoint(tiny_ckpt)
    live = tensors["lm_head.weight"].float().abs().sum(-1) > 0
    assert not live[len(tok):].any() and not live[[0, 1, 3]].any() and live[2]
    for i in live.nonzero()[:, 0].tolist():
        text = tok.decode([i])
        assert "\ufffd" not in text and all(c.isprintable() or c in "\n\t" for c in text), (i, text)


def test_cli(tmp_path):
    out = tmp_path / "cli"
    result = subprocess.run([sys.executable, "-m", "longcat_common.testing.tiny", str(out), "--fp8", "--seed", "3"],
                            capture_output=True, text=True, check=True)
    assert str(out) in result.stdout
    raw = json.loads((out / "config.json").read_text())
    assert raw["quantization_config"]["quant_method"] == "fp8" and raw["hidden_size"] == PRESETS["tiny"]["hidden_size"]
