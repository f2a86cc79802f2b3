"""LongCat-Flash's MTP draft layer written straight from LONGCAT_SPEC.md §5, and greedy MTP decoding.

The oracle for the engines' draft logits and their accepted-token counts: pure torch fp32 on the
checkpoint's own ``model.mtp.*`` names, reusing only reference_forward's pieces (none of longcat_common's
model code). Row t of the draft reads token t+1 and the target's final-normed hidden state h_t, and
predicts token t+2.
"""

from dataclasses import dataclass

import torch

from longcat_common.config import LongcatConfig

from .reference_forward import final_hidden, forward, mla, rms_norm, swiglu

MTP = "model.mtp.layers.0"


def mtp_hidden(cfg: LongcatConfig, w: dict, next_ids: list[int], previous_hidden: torch.Tensor) -> torch.Tensor:
    """next_ids [T] (tokens t+1), previous_hidden [T, H] (h_t) -> the MTP layer's final-normed output [T, H]."""
    eps = cfg.rms_norm_eps
    embed = w.get("model.mtp.embed_tokens.weight", w["model.embed_tokens.weight"])[torch.tensor(next_ids)]
    x = torch.cat([rms_norm(embed, w[f"{MTP}.enorm.m.weight"], eps),
                   rms_norm(previous_hidden, w[f"{MTP}.hnorm.m.weight"], eps)], dim=-1) @ w[f"{MTP}.eh_proj.weight"].T
    x = x + mla(w, f"{MTP}.self_attn", cfg, rms_norm(x, w[f"{MTP}.input_layernorm.weight"], eps))
    x = x + swiglu(w, f"{MTP}.transformer_layer.mlp", rms_norm(x, w[f"{MTP}.post_attention_layernorm.weight"], eps))
    return rms_norm(x, w["model.mtp.norm.weight"], eps)


def mtp_logits(cfg: LongcatConfig, w: dict, token_ids: list[int]) -> torch.Tensor:
    """One sequence -> draft logits [T - 1, vocab]: row t predicts token t + 2 from tokens <= t + 1."""
    h = final_hidden(cfg, w, token_ids)
    return mtp_hidden(cfg, w, token_ids[1:], h[:-1]) @ w["lm_head.weight"].T


def draft_tokens(cfg: LongcatConfig, w: dict, token_ids: list[int], k: int,
                 hidden: torch.Tensor | None = None) -> tuple[list[int], torch.Tensor]:
    """The k greedy draft tokens after token_ids, chained like the engines: step j > 1 reads the draft
    token of step j - 1 and the MTP output of step j - 1 in place of the target's hidden state.
    hidden: the target's final hidden states of token_ids (or of a longer sequence starting with them).
    Returns (tokens, logits of each step [k, vocab])."""
    hidden = final_hidden(cfg, w, token_ids) if hidden is None else hidden
    ids, prev = token_ids[1:], hidden[:len(token_ids) - 1]
    tokens, rows = [], []
    for _ in range(k):
        out = mtp_hidden(cfg, w, ids, prev)
        rows.append(out[-1] @ w["lm_head.weight"].T)
        tokens.append(int(rows[-1].argmax()))
        ids, prev = ids + tokens[-1:], torch.cat([prev, out[-1:]])
    return tokens, torch.stack(rows)


def greedy(cfg: LongcatConfig, w: dict, prompt: list[int], max_tokens: int) -> list[int]:
    """Plain greedy continuation of prompt (EOS not special)."""
    seq = list(prompt)
    for _ in range(max_tokens):
        seq.append(int(forward(cfg, w, seq)[-1].argmax()))
    return seq[len(prompt):]


@dataclass
class SpecRun:
    tokens: list[int]  # the greedy continuation (identical to plain greedy decoding)
    rounds: list[tuple[int, int]]  # per verification step: (draft tokens verified, draft tokens accepted)

    @property
    def accepted(self) -> int:
        return sum(a for _, a in self.rounds)

    @property
    def drafted(self) -> int:
        return sum(d for d, _ in self.rounds)


def speculative_greedy(cfg: LongcatConfig, w: dict, prompt: list[int], max_tokens: int, k: int,
                       continuation: list[int] | None = None) -> SpecRun:
    """Greedy decoding with k MTP draft tokens per step, verified by the target, as vLLM and SGLang run it.

    The first step (prefill) samples one token; every later step verifies k draft tokens, keeps the
    longest prefix that matches the target's greedy tokens and adds the target's next token; decoding
    stops once max_tokens are generated (the last step's drafts are verified in full, as vLLM counts them).
    Since the target verifies every token, the continuation is plain greedy: it is computed once, and
    each step's drafts are read off it (causal attention: a prefix's hidden states are the sequence's).
    continuation: ``greedy(cfg, w, prompt, n)`` with n >= max_tokens + k, if already at hand.
    """
    continuation = continuation or greedy(cfg, w, prompt, max_tokens + k)
    if len(continuation) < max_tokens + k:
        raise ValueError(f"continuation needs max_tokens + k = {max_tokens + k} tokens, got {len(continuation)}")
    seq = list(prompt) + continuation
    hidden = final_hidden(cfg, w, seq)
    n, rounds = len(prompt) + 1, []
    while n - len(prompt) < max_tokens:
        drafts, _ = draft_tokens(cfg, w, seq[:n], k, hidden)
        accepted = next((j for j in range(k) if drafts[j] != seq[n + j]), k)
        rounds.append((k, accepted))
        n += accepted + 1
    return SpecRun(seq[len(prompt):len(prompt) + max_tokens], rounds)
