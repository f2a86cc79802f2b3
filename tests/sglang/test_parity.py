"""The SGLang server (bf16, as served) against the transformers oracle (fp32) on the tiny checkpoint.

Tolerances: tests/sglang/parity.py (twice transformers' own bf16 gap, measured on the same prompts).
Scaling zero experts by 1 instead of routed_scaling_factor (SGLang 0.5.23's built-in class, sglang#10019)
moves the same log-probs by many times more.
"""

import pytest

from tests import oracle
from tests.sglang.parity import Gap, greedy_matches, reference_and_tolerance, zero_experts_scaled
from tests.sglang.server import sglang_server

NEW_TOKENS = 8


@pytest.fixture(scope="module")
def server(tiny_ckpt, tmp_path_factory):
    with sglang_server(tiny_ckpt, tmp_path_factory.mktemp("sglang-bf16") / "server.log") as s:
        yield s


@pytest.fixture(scope="module")
def reference(tiny_ckpt, prompt_ids):
    return reference_and_tolerance(tiny_ckpt, prompt_ids)


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
    assert gap.within(tol)


def test_greedy_continuations_match_where_margin_is_clear(server, tiny_ckpt, prompt_ids):
    compared = greedy_matches(server, oracle.load_oracle(tiny_ckpt), prompt_ids, NEW_TOKENS)
    print(f"greedy: {compared} of {NEW_TOKENS * len(prompt_ids)} decode steps had a clear margin and matched")
    assert compared >= NEW_TOKENS * len(prompt_ids) // 2


def test_builtin_zero_expert_scaling_is_far_outside_tolerance(server, reference, tiny_ckpt, prompt_ids):
    fp32, tol = reference
    model = oracle.load_oracle(tiny_ckpt)
    share = min(zero_expert_share(model, ids) for ids in prompt_ids)
    with zero_experts_scaled(model, 1 / model.config.routed_scaling_factor):  # x1 instead of x rsf
        builtin = Gap.between([oracle.prompt_logprobs(model, ids) for ids in prompt_ids], fp32)
    served = Gap.between([server.prompt_logprobs(ids) for ids in prompt_ids], fp32)
    print(f"zero experts carry >= {share:.0%} of the routing weight on every prompt; |d logprob| with zero "
          f"experts x1: {builtin}; served: {served}; tolerance {tol}")
    assert share > 0.2
    assert builtin.p95 > 5 * tol.p95 and builtin.mean > 5 * tol.mean
    assert served.within(tol)
