"""The SGLang server (bf16, as served) against the transformers oracle (fp32) on the tiny checkpoint.

Tolerance: the yardstick is transformers' own bf16 forward of the same checkpoint on the same prompts,
measured here: the max and the mean of |bf16 - fp32| teacher-forced log-prob (on the tiny checkpoint
about 0.5 and 0.06 nats: its logits reach +-40, so improbable tokens carry large absolute errors). A
different bf16 implementation rounds in other places, so the server may differ from fp32 by up to
TOL_FACTOR times each. Scaling zero experts by 1 instead of routed_scaling_factor (SGLang 0.5.23's
built-in class, sglang#10019) moves the same log-probs by more than ten times that.
"""

import contextlib
from dataclasses import dataclass

import pytest
import torch

from tests import oracle
from tests.sglang.server import sglang_server

TOL_FACTOR = 2.0
CLEAR_MARGIN = 0.5  # oracle top-1 minus top-2 logit: bf16 noise (max logit error ~0.2 here) cannot flip it
NEW_TOKENS = 8


@dataclass
class Gap:
    max: float
    mean: float

    @classmethod
    def between(cls, a: list[list[float | None]], b: list[list[float | None]]) -> "Gap":
        d = torch.tensor([abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb) if x is not None])
        return cls(float(d.max()), float(d.mean()))

    def within(self, tol: "Gap") -> bool:
        return self.max <= tol.max and self.mean <= tol.mean

    def __str__(self):
        return f"max {self.max:.4f} / mean {self.mean:.4f}"


@pytest.fixture(scope="module")
def server(tiny_ckpt, tmp_path_factory):
    with sglang_server(tiny_ckpt, tmp_path_factory.mktemp("sglang-bf16") / "server.log") as s:
        yield s


@pytest.fixture(scope="module")
def reference(tiny_ckpt, prompt_ids):
    """(oracle fp32 prompt log-probs, tolerance), the tolerance from transformers' own bf16 gap."""
    fp32 = [oracle.prompt_logprobs(oracle.load_oracle(tiny_ckpt), ids) for ids in prompt_ids]
    bf16 = [oracle.prompt_logprobs(oracle.load_oracle(tiny_ckpt, torch.bfloat16), ids) for ids in prompt_ids]
    yardstick = Gap.between(fp32, bf16)
    tol = Gap(TOL_FACTOR * yardstick.max, TOL_FACTOR * yardstick.mean)
    print(f"\ntransformers bf16 vs fp32 |d logprob|: {yardstick}; tolerance {tol}")
    return fp32, tol


@contextlib.contextmanager
def zero_experts_scaled_by_one(model):
    """The oracle with SGLang 0.5.23's built-in zero-expert scaling: x1 instead of x routed_scaling_factor."""
    rsf = model.config.routed_scaling_factor
    patched = []
    for layer in model.model.layers:
        experts = layer.mlp.experts

        def forward(h, ids, weights, _experts=experts, _forward=experts.forward):
            return _forward(h, ids, torch.where(ids >= _experts.num_routed_experts, weights / rsf, weights))
        experts.forward = forward
        patched.append(experts)
    try:
        yield model
    finally:
        for experts in patched:
            del experts.forward


def zero_expert_share(model, ids: list[int]) -> float:
    """Fraction of all routing weight (every token, every layer) that goes to zero experts."""
    n_routed, shares = model.config.n_routed_experts, []

    def hook(_module, _inputs, outputs):
        _, weights, topk = outputs
        shares.append(float((weights * (topk >= n_routed)).sum() / weights.sum()))
    handles = [layer.mlp.router.register_forward_hook(hook) for layer in model.model.layers]
    try:
        oracle.logits(model, ids)
    finally:
        for h in handles:
            h.remove()
    return sum(shares) / len(shares)


def test_prompt_logprobs_match_oracle(server, reference, prompt_ids):
    fp32, tol = reference
    gap = Gap.between([server.prompt_logprobs(ids) for ids in prompt_ids], fp32)
    print(f"server bf16 vs oracle fp32 |d logprob|: {gap} over {sum(map(len, prompt_ids))} tokens")
    assert gap.within(tol)


def test_extend_after_cached_prefix_matches_oracle(server, reference, tiny_ckpt, prompt_ids):
    """The second request finds its first part in the radix cache (the MLA latent KV of both sublayers)."""
    _, tol = reference
    prefix, ids = prompt_ids[0], prompt_ids[0] + prompt_ids[1][1:]
    server.generate(prefix)
    meta = server.generate(ids, logprob_start_len=len(prefix))["meta_info"]
    served = [lp for lp, _token, _text in meta["input_token_logprobs"]]
    want = oracle.prompt_logprobs(oracle.load_oracle(tiny_ckpt), ids)[len(prefix):]
    gap = Gap.between([served], [want])
    print(f"extend after {meta['cached_tokens']} cached tokens |d logprob|: {gap}")
    assert meta["cached_tokens"] >= len(prefix) - 1
    assert gap.max <= tol.max


def test_greedy_continuations_match_where_margin_is_clear(server, tiny_ckpt, prompt_ids):
    model = oracle.load_oracle(tiny_ckpt)
    compared = 0
    for ids in prompt_ids:
        want, margins = oracle.greedy(model, ids, NEW_TOKENS)
        clear = next((i for i, m in enumerate(margins) if m < CLEAR_MARGIN), NEW_TOKENS)
        got = server.generate(ids, max_new_tokens=NEW_TOKENS)["output_ids"]
        assert got[:clear] == want[:clear], (ids, got, want, margins)
        compared += clear
    print(f"greedy: {compared} of {NEW_TOKENS * len(prompt_ids)} decode steps had a clear margin and matched")
    assert compared >= NEW_TOKENS * len(prompt_ids) // 2


def test_builtin_zero_expert_scaling_is_far_outside_tolerance(server, reference, tiny_ckpt, prompt_ids):
    fp32, tol = reference
    model = oracle.load_oracle(tiny_ckpt)
    share = min(zero_expert_share(model, ids) for ids in prompt_ids)
    with zero_experts_scaled_by_one(model):
        builtin = Gap.between([oracle.prompt_logprobs(model, ids) for ids in prompt_ids], fp32)
    served = Gap.between([server.prompt_logprobs(ids) for ids in prompt_ids], fp32)
    print(f"zero experts carry >= {share:.0%} of the routing weight on every prompt; |d logprob| with zero "
          f"experts x1: {builtin}; served: {served}; tolerance {tol}")
    assert share > 0.2
    assert builtin.max > 5 * tol.max and builtin.mean > 5 * tol.mean
    assert served.within(tol)
