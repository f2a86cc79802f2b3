"""Random LongCat-Flash checkpoints in the exact Hub layout, for tests and benchmarks.

    python -m longcat_common.testing.tiny OUT_DIR [--fp8] [--preset tiny|bench|draft|odd|lite|lite-oe|lite-draft] [--seed N]
                                  [--flavour chat|thinking|2601|lite [--scripted]]

Writes config.json (no model_type, like the Hub's), generation_config.json, sharded safetensors
(one shard per decoder layer; embeddings in the first, final norm, lm_head and MTP in a last one) with
model.safetensors.index.json, and a small real tokenizer (``longcat_common.testing.tokenizer``). ``--fp8`` writes the
Chat-FP8 layout: every quantisable linear as e4m3 + fp32 ``weight_scale_inv`` (128x128 blocks), the
quantisation of the very bf16 weights the same seed gives without ``--fp8``. ``--flavour`` adds
LongCat's special tokens and that model's chat template (2601 also its config shape: LongcatCausalLM
with YaRN), ``--scripted`` weights whose greedy output is a fixed agent turn (``longcat_common.testing.agent``).

The weights are random but conditioned like a trained model where tests need it:
  * 1/sqrt(fan_in) inits, output projections (o_proj, down_proj) at half gain, so the residual stream
    grows slowly over the layers;
  * RMSNorm weights spread around 1 (not 1), so a norm applied wrongly shows;
  * lm_head rows with log-normal norms (a few "frequent" tokens), scaled for clear top-1 margins;
    rows of ids past the tokenizer, of unk/bos/pad and of tokens that are not printable text on their
    own are zero, so they are never predicted;
  * routers with slightly wider zero-expert rows and an ``e_score_correction_bias`` favouring zero
    experts: on tiny, ~40% of the top-k slots are zero experts and ~40% of tokens give them more than
    half their routing weight (tests/common/test_oracle.py measures this and the top-1 margins).
The ``lite`` / ``lite-oe`` presets are Flash-Lite checkpoints (n-gram embeddings, longcat_common.ngram) in
its two spellings. The ``draft`` preset (awkward sizes) rewrites the embeddings, lm_head and MTP eh_proj so that the MTP
draft is good (``longcat_common.testing.draft``).
"""

import argparse
import json
import math
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..checkpoint import MTP_PREFIX, checkpoint_shapes, expected_tensors
from ..config import LITE_ARCHITECTURE, LongcatConfig
from ..fp8 import BLOCK, quantize_block_fp8
from .agent import FLAVOUR_CONFIG, FLAVOURS, TEMPLATES, agent_tokenizer, script_chain, script_weights
from .draft import good_draft_weights
from .tokenizer import CHAT_TEMPLATE, BOS_ID, EOS_ID, build_tokenizer, muted_token_ids, write_tokenizer

PRESETS = {
    # loads in seconds; kv_lora_rank + qk_rope_head_dim = 576 for the engines' CPU MLA backends
    "tiny": dict(hidden_size=256, num_layers=2, num_attention_heads=4, q_lora_rank=128, kv_lora_rank=512,
                 qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, ffn_hidden_size=512,
                 expert_ffn_hidden_size=128, n_routed_experts=16, zero_expert_num=8, moe_topk=4),
    # for CPU benchmarks: about 0.3B parameters
    "bench": dict(hidden_size=1024, num_layers=4, num_attention_heads=8, q_lora_rank=384, kv_lora_rank=512,
                  qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, ffn_hidden_size=2048,
                  expert_ffn_hidden_size=256, n_routed_experts=64, zero_expert_num=32, moe_topk=8),
    # good MTP draft (testing/draft.py); sizes off the 64/128/256 grid, 3 heads per rank at TP=2
    "draft": dict(hidden_size=288, num_layers=2, num_attention_heads=6, q_lora_rank=96, kv_lora_rank=512,
                  qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, ffn_hidden_size=416,
                  expert_ffn_hidden_size=96, n_routed_experts=12, zero_expert_num=4, moe_topk=3),
    # sizes the engines pad or cannot split: 5 heads, FFN 416, expert FFN 96, vocab 1061 (off the 64 grid)
    # Flash-Lite (LongcatFlashNgramForCausalLM): the draft preset's awkward sizes plus n-gram embeddings, 3 x 3
    # tables of 32 columns, rows int(2.37 V + 2e + 1) (off every grid); the tables dominate the layer-0 input
    "lite": dict(hidden_size=288, num_layers=2, num_attention_heads=6, q_lora_rank=96, kv_lora_rank=512,
                 qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, ffn_hidden_size=416,
                 expert_ffn_hidden_size=96, n_routed_experts=12, zero_expert_num=4, moe_topk=3,
                 ngram_vocab_size_ratio=2.37, emb_neighbor_num=4, emb_split_num=3),
    # the same under Flash-Lite-Sparse / LongCat-2.0's spelling (LongcatCausalLM, oe_* fields and tensor names)
    "lite-oe": dict(hidden_size=288, num_layers=2, num_attention_heads=6, q_lora_rank=96, kv_lora_rank=512,
                    qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, ffn_hidden_size=416,
                    expert_ffn_hidden_size=96, n_routed_experts=12, zero_expert_num=4, moe_topk=3,
                    oe_vocab_size_ratio=2.37, oe_neighbor_num=4, oe_split_num=3),
    # Flash-Lite whose MTP draft is good (testing/draft.py), the n-gram part smaller than in "lite"
    "lite-draft": dict(hidden_size=288, num_layers=2, num_attention_heads=6, q_lora_rank=96, kv_lora_rank=512,
                       qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, ffn_hidden_size=416,
                       expert_ffn_hidden_size=96, n_routed_experts=12, zero_expert_num=4, moe_topk=3,
                       ngram_vocab_size_ratio=2.37, emb_neighbor_num=4, emb_split_num=3),
    "odd": dict(vocab_size=1061, hidden_size=288, num_layers=2, num_attention_heads=5, q_lora_rank=96,
                kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, ffn_hidden_size=416,
                expert_ffn_hidden_size=96, n_routed_experts=12, zero_expert_num=4, moe_topk=3),
}
WEIGHT_RECIPES = {"draft": good_draft_weights, "lite-draft": good_draft_weights}  # preset -> rewrite of the random weights
PRESET_ARCHITECTURES = {"lite": LITE_ARCHITECTURE, "lite-draft": LITE_ARCHITECTURE, "lite-oe": "LongcatCausalLM"}  # others: LongcatFlashForCausalLM
FP8_QUANTIZATION_CONFIG = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                           "weight_block_size": list(BLOCK)}

NORM_SPREAD = 0.1  # RMSNorm weights ~ N(1, 0.1^2)
OUTPUT_GAIN = 0.5  # o_proj / down_proj init relative to 1/sqrt(fan_in)
LOGIT_SCALE = 3.0  # std of a typical lm_head logit
LOGIT_NORM_SPREAD = 0.6  # lm_head row norms ~ exp(N(0, 0.6^2))
ROUTER_GAIN = (1.0, 1.1)  # router logit std for real, zero expert rows
ZERO_EXPERT_BIAS = 0.25  # e_score_correction_bias of zero experts, in units of 1/E (a mean probability)
REAL_EXPERT_BIAS = 0.3  # std of the real experts' bias, same units
NGRAM_TABLE_STD = 3.0  # n-gram table entries: with the projections, the n-gram sum outweighs the token embedding


def hub_config(preset: str, vocab_size: int) -> dict:
    """config.json of a preset, with the Hub's field names (and, like the Hub's, no model_type)."""
    return {
        "architectures": [PRESET_ARCHITECTURES.get(preset, "LongcatFlashForCausalLM")],
        "vocab_size": vocab_size,
        **PRESETS[preset],
        "zero_expert_type": "identity",
        "routed_scaling_factor": 6.0,
        "mla_scale_q_lora": True,
        "mla_scale_kv_lora": True,
        "rope_theta": 10000000.0,
        "rms_norm_eps": 1e-5,
        "max_position_embeddings": 4096,
        "router_bias": False,
        "norm_topk_prob": False,
        "attention_bias": False,
        "tie_word_embeddings": False,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "num_nextn_predict_layers": 1,
        "rounter_params_dtype": "float32",
        "hidden_act": "silu",
        "torch_dtype": "bfloat16",
    }


def _init(name: str, shape: tuple, config: LongcatConfig, muted: list[int], gen: torch.Generator) -> torch.Tensor:
    """One fp32 tensor of the checkpoint, drawn from ``gen``."""
    def randn(*size):
        return torch.randn(*size, generator=gen)

    n_real, n_total = config.n_routed_experts, config.num_experts_total
    if name.endswith("mlp.router.e_score_correction_bias"):
        bias = REAL_EXPERT_BIAS * randn(n_total)
        bias[n_real:] = ZERO_EXPERT_BIAS
        return bias / n_total
    if name.endswith("mlp.router.classifier.weight"):
        gain = torch.full((n_total, 1), ROUTER_GAIN[0])
        gain[n_real:] = ROUTER_GAIN[1]
        return randn(shape) * gain / math.sqrt(shape[1])
    if len(shape) == 1:  # RMSNorm weight
        return 1.0 + NORM_SPREAD * randn(shape)
    if name.endswith("embed_tokens.weight"):
        return randn(shape)
    if config.ngram and name in {config.ngram.table_name(e) for e in range(config.ngram.num_tables)}:
        return NGRAM_TABLE_STD * randn(shape)
    if name == "lm_head.weight":
        rows = randn(shape) * torch.exp(LOGIT_NORM_SPREAD * randn(shape[0], 1))
        rows[muted] = 0.0
        return rows * LOGIT_SCALE / math.sqrt(shape[1] * math.exp(2 * LOGIT_NORM_SPREAD ** 2))
    gain = OUTPUT_GAIN if name.endswith(("o_proj.weight", "down_proj.weight")) else 1.0
    return randn(shape) * gain / math.sqrt(shape[1])


def random_weights(config: LongcatConfig, muted: list[int], seed: int) -> dict[str, torch.Tensor]:
    """name -> tensor for every checkpoint tensor (MTP included): bf16, the router fp32.

    ``muted``: token ids never to predict (zero lm_head rows). ``model.mtp.embed_tokens`` is a copy
    of ``model.embed_tokens``.
    """
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, (shape, _) in checkpoint_shapes(config, include_mtp=True).items():
        if name == f"{MTP_PREFIX}embed_tokens.weight":
            out[name] = out["model.embed_tokens.weight"].clone()
            continue
        tensor = _init(name, shape, config, muted, gen)
        out[name] = tensor if ".mlp.router." in name else tensor.to(torch.bfloat16)
    return out


def quantize_weights(weights: dict[str, torch.Tensor], config: LongcatConfig) -> dict[str, torch.Tensor]:
    """The Chat-FP8 layout of ``weights``: quantisable linears -> e4m3 weight + fp32 weight_scale_inv."""
    quantisable = {name for name, (_, q) in checkpoint_shapes(config, include_mtp=True).items() if q}
    out = {}
    for name, tensor in weights.items():
        if name in quantisable:
            out[name], out[name + "_scale_inv"] = quantize_block_fp8(tensor, BLOCK)
        else:
            out[name] = tensor
    return out


def _shard_of(name: str, num_layers: int) -> int:
    """Shard index: decoder layer l -> l (embeddings with layer 0); norm, lm_head and MTP -> the last."""
    if name.startswith("model.layers."):
        return int(name.split(".")[2])
    return 0 if name == "model.embed_tokens.weight" else num_layers


def write_safetensors(out_dir: Path, tensors: dict[str, torch.Tensor], num_layers: int) -> None:
    """model-0000i-of-0000n.safetensors shards and model.safetensors.index.json."""
    n = num_layers + 1
    shards: list[dict[str, torch.Tensor]] = [{} for _ in range(n)]
    for name, tensor in tensors.items():
        shards[_shard_of(name, num_layers)][name] = tensor.contiguous()
    weight_map = {}
    for i, shard in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        save_file(shard, str(out_dir / file), metadata={"format": "pt"})
        os.chmod(out_dir / file, 0o644)  # safetensors leaves its temp file's 0600
        weight_map.update((name, file) for name in shard)
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def write_checkpoint(out_dir, preset: str = "tiny", fp8: bool = False, seed: int = 0,
                     overrides: dict | None = None, flavour: str | None = None, scripted: bool = False) -> Path:
    """Writes a random checkpoint of ``preset`` into out_dir (created if needed); returns its path.

    ``overrides`` is merged into config.json only (a None value deletes the key): the tensors always
    follow the preset, so tests can write configs that are wrong for their checkpoint. ``flavour`` and
    ``scripted``: see ``longcat_common.testing.agent`` (without a flavour: the plain tokenizer, Flash-Chat's template).
    """
    if scripted and not flavour:
        raise ValueError(f"scripted checkpoints need a flavour ({', '.join(FLAVOURS)})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer()
    if flavour:
        tok = agent_tokenizer(tok, flavour, scripted)
    raw = {**hub_config(preset, vocab_size=-(-tok.get_vocab_size() // 64) * 64), **FLAVOUR_CONFIG.get(flavour, {})}
    write_tokenizer(out_dir, tok, model_max_length=raw["max_position_embeddings"],
                    chat_template=TEMPLATES[flavour] if flavour else CHAT_TEMPLATE)
    if fp8:
        raw["quantization_config"] = dict(FP8_QUANTIZATION_CONFIG)
    config = LongcatConfig.from_dict(raw)

    muted = muted_token_ids(tok) + list(range(tok.get_vocab_size(), config.vocab_size))
    tensors = random_weights(config, muted, seed)
    if preset in WEIGHT_RECIPES:
        tensors = WEIGHT_RECIPES[preset](tensors, config, muted, torch.Generator().manual_seed(seed + 1))
    if scripted:
        script_weights(tensors, script_chain(tok, flavour), torch.Generator().manual_seed(seed),
                       1 + (config.ngram.num_tables if config.ngram else 0))
    if fp8:
        tensors = quantize_weights(tensors, config)
    if {n: tuple(t.shape) for n, t in tensors.items()} != expected_tensors(config, include_mtp=True):
        raise RuntimeError("longcat_common.testing.tiny is out of step with checkpoint.expected_tensors")
    write_safetensors(out_dir, tensors, config.num_layers)

    raw.update(overrides or {})
    raw = {k: v for k, v in raw.items() if v is not None}
    (out_dir / "config.json").write_text(json.dumps(raw, indent=2) + "\n")
    generation = {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID}
    (out_dir / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    return out_dir


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m longcat_common.testing.tiny", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--fp8", action="store_true", help="Chat-FP8 layout (block-FP8 linears)")
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flavour", choices=FLAVOURS, help="LongCat tokens and this model's chat template")
    parser.add_argument("--scripted", action="store_true", help="greedy output is the flavour's fixed agent turn")
    args = parser.parse_args(argv)
    if args.scripted and not args.flavour:
        parser.error("--scripted needs --flavour")
    path = write_checkpoint(args.out_dir, args.preset, args.fp8, args.seed, flavour=args.flavour,
                            scripted=args.scripted)
    size = json.loads((path / "model.safetensors.index.json").read_text())["metadata"]["total_size"]
    kind = f"{args.preset}{' fp8' if args.fp8 else ''}{' ' + args.flavour if args.flavour else ''}"
    print(f"wrote {kind}{' scripted' if args.scripted else ''} LongCat-Flash checkpoint (seed {args.seed}, "
          f"{size / 2**20:.1f} MiB) to {path}")


if __name__ == "__main__":
    main()
