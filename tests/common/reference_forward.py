"""LongCat-Flash forward written straight from LONGCAT_SPEC.md §2-§4, on the checkpoint's own tensor names.

The independent check for the oracle (and through it, the engines): pure torch fp32, one formula per
line, a per-token loop for the router. From longcat_common it uses only the config parser and the
FP8 dequantiser, none of the model code.
"""

import json
import math
from pathlib import Path

import torch
from safetensors import safe_open

from longcat_common.config import LongcatConfig
from longcat_common.fp8 import Fp8CheckpointDequantizer


def load_checkpoint(ckpt_dir) -> tuple[LongcatConfig, dict[str, torch.Tensor]]:
    """(config, name -> fp32 tensor) of every checkpoint tensor (MTP layer included), FP8 dequantised."""
    ckpt_dir = Path(ckpt_dir)
    config = LongcatConfig.from_dict(json.loads((ckpt_dir / "config.json").read_text()))
    files = sorted(set(json.loads((ckpt_dir / "model.safetensors.index.json").read_text())["weight_map"].values()))

    def stream():
        for file in files:
            with safe_open(str(ckpt_dir / file), framework="pt") as f:
                yield from ((name, f.get_tensor(name)) for name in f.keys())

    weights = {name: t.float() for name, t in Fp8CheckpointDequantizer(dtype=torch.float32)(stream())}
    return config, weights


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x [..., d], weight [d]."""
    return weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def rope_interleaved(x: torch.Tensor, pos: torch.Tensor, theta: float) -> torch.Tensor:
    """x [T, heads, d]: rotates the pairs (x[2i], x[2i+1]) by pos * theta^(-2i/d)."""
    d = x.shape[-1]
    angle = pos[:, None].double() * theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # [T, d/2]
    cos, sin = angle.cos().float()[:, None, :], angle.sin().float()[:, None, :]
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((even * cos - odd * sin, odd * cos + even * sin), dim=-1).flatten(-2)


def mla(w: dict, p: str, cfg: LongcatConfig, a: torch.Tensor) -> torch.Tensor:
    """a [T, H] (normed) -> [T, H]; causal MLA with LoRA scaling, k_pe shared by all heads."""
    t, heads, nope, rope = a.shape[0], cfg.num_attention_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim
    s_q = math.sqrt(cfg.hidden_size / cfg.q_lora_rank) if cfg.mla_scale_q_lora else 1.0
    s_kv = math.sqrt(cfg.hidden_size / cfg.kv_lora_rank) if cfg.mla_scale_kv_lora else 1.0
    pos = torch.arange(t)
    cq = rms_norm(a @ w[f"{p}.q_a_proj.weight"].T, w[f"{p}.q_a_layernorm.weight"], cfg.rms_norm_eps) * s_q
    q = (cq @ w[f"{p}.q_b_proj.weight"].T).view(t, heads, nope + rope)
    ckv = a @ w[f"{p}.kv_a_proj_with_mqa.weight"].T
    c = rms_norm(ckv[:, : cfg.kv_lora_rank], w[f"{p}.kv_a_layernorm.weight"], cfg.rms_norm_eps) * s_kv
    k_pe = ckv[:, None, cfg.kv_lora_rank:]  # [T, 1, rope]
    kv = (c @ w[f"{p}.kv_b_proj.weight"].T).view(t, heads, nope + cfg.v_head_dim)
    q_pe, k_pe = rope_interleaved(q[..., nope:], pos, cfg.rope_theta), rope_interleaved(k_pe, pos, cfg.rope_theta)
    scores = (torch.einsum("qhd,khd->hqk", q[..., :nope], kv[..., :nope])
              + torch.einsum("qhd,kd->hqk", q_pe, k_pe[:, 0])) / math.sqrt(nope + rope)
    scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    out = torch.einsum("hqk,khd->qhd", scores.softmax(-1), kv[..., nope:]).reshape(t, -1)
    return out @ w[f"{p}.o_proj.weight"].T


def swiglu(w: dict, p: str, x: torch.Tensor) -> torch.Tensor:
    """x [T, H] -> down(silu(gate(x)) * up(x)) [T, H]."""
    gate, up = x @ w[f"{p}.gate_proj.weight"].T, x @ w[f"{p}.up_proj.weight"].T
    return (torch.nn.functional.silu(gate) * up) @ w[f"{p}.down_proj.weight"].T


def moe(w: dict, p: str, cfg: LongcatConfig, m: torch.Tensor, identity_scale: float, stats: list | None):
    """m [T, H] -> [T, H]: softmax router over real + zero experts, biased top-k choice, unbiased weights."""
    probs = (m @ w[f"{p}.router.classifier.weight"].T).softmax(-1)  # [T, E]
    biased = (probs + w[f"{p}.router.e_score_correction_bias"]).topk(cfg.moe_topk + 1, dim=-1)  # [T, k + 1]
    idx = biased.indices[:, :cfg.moe_topk]
    out = torch.zeros_like(m)
    for t in range(m.shape[0]):
        for e in idx[t].tolist():
            if e < cfg.n_routed_experts:
                out[t] += cfg.routed_scaling_factor * probs[t, e] * swiglu(w, f"{p}.experts.{e}", m[t : t + 1])[0]
            else:  # identity (zero-computation) expert: a copy of the MoE input
                out[t] += identity_scale * probs[t, e] * m[t]
    if stats is not None:
        stats.append({"is_zero": idx >= cfg.n_routed_experts, "weight": probs.gather(1, idx),
                      "gap": biased.values[:, -2] - biased.values[:, -1]})
    return out


def ngram_rows(cfg: LongcatConfig, token_ids: list[int]) -> list[list[int]]:
    """Flash-Lite: the row each n-gram table reads for each position of one sequence (0: none), straight
    from Meituan's ``NgramEmbedding``: ignored ids read as 0; 0 and EOS end a segment (as its last token);
    order i, split j reads table e = (i-2)k + j of M_e = int(ratio * V + 2e + 1) rows at
    (c + sum_d h_d * (V^d mod M_e)) mod M_e, h_d the token d back inside the segment, 0 beyond it."""
    g = cfg.ngram
    n, k, vocab = g.neighbors, g.splits, g.hash_vocab
    seq = [0 if t in g.ignored_ids else t for t in token_ids]
    out = []
    for t, c in enumerate(seq):
        history, start = [], t  # history[d-1] = h_d
        while start > 0 and len(history) < n - 1 and seq[start - 1] > 0 and seq[start - 1] not in g.eos_ids:
            start -= 1
            history.append(seq[start])
        history += [0] * (n - 1 - len(history))
        rows = []
        for i in range(2, n + 1):
            for j in range(k):
                e = (i - 2) * k + j
                size = int(g.ratio * vocab + 2 * e + 1)
                rows.append(0 if c == 0 else (c + sum(history[d - 1] * pow(vocab, d, size) for d in range(1, i))) % size)
        out.append(rows)
    return out


def embedding(cfg: LongcatConfig, w: dict, token_ids: list[int]) -> torch.Tensor:
    """The layer-0 input [T, H]: the token embedding, for Flash-Lite averaged with the n-gram rows' projections."""
    x = w["model.embed_tokens.weight"][torch.tensor(token_ids)]
    g = cfg.ngram
    if g is None:
        return x
    out = []
    for t, rows in enumerate(ngram_rows(cfg, token_ids)):
        total = x[t].clone()
        for e, row in enumerate(rows):
            if row:
                total += w[g.projection_name(e)] @ w[g.table_name(e)][row]
        out.append(total if token_ids[t] in g.ignored_ids else total / (1 + len(rows)))
    return torch.stack(out)


def final_hidden(cfg: LongcatConfig, w: dict, token_ids: list[int], identity_scale: float | None = None,
                 stats: list | None = None) -> torch.Tensor:
    """token_ids (one sequence) -> the hidden state after the final norm [T, H] fp32 (what lm_head reads).

    identity_scale: factor on zero-expert slots, routed_scaling_factor by default (1.0 reproduces
    SGLang 0.5.23's deviation). stats: if a list, gets per layer {"is_zero": [T, k] bool, "weight": [T, k],
    "gap": [T] (k-th minus (k+1)-th biased router score: how near the expert choice is to a tie)}.
    """
    scale = cfg.routed_scaling_factor if identity_scale is None else identity_scale
    eps = cfg.rms_norm_eps
    x = embedding(cfg, w, token_ids)
    for layer in range(cfg.num_layers):
        p = f"model.layers.{layer}"
        x = x + mla(w, f"{p}.self_attn.0", cfg, rms_norm(x, w[f"{p}.input_layernorm.0.weight"], eps))
        m = rms_norm(x, w[f"{p}.post_attention_layernorm.0.weight"], eps)
        shortcut = moe(w, f"{p}.mlp", cfg, m, scale, stats)
        x = x + swiglu(w, f"{p}.mlps.0", m)
        x = x + mla(w, f"{p}.self_attn.1", cfg, rms_norm(x, w[f"{p}.input_layernorm.1.weight"], eps))
        x = x + swiglu(w, f"{p}.mlps.1", rms_norm(x, w[f"{p}.post_attention_layernorm.1.weight"], eps)) + shortcut
    return rms_norm(x, w["model.norm.weight"], eps)


def forward(cfg: LongcatConfig, w: dict, token_ids: list[int], identity_scale: float | None = None,
            stats: list | None = None) -> torch.Tensor:
    """token_ids (one sequence) -> logits [T, vocab] fp32; arguments as for ``final_hidden``."""
    return final_hidden(cfg, w, token_ids, identity_scale, stats) @ w["lm_head.weight"].T
