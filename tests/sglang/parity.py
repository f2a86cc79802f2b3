"""Comparing served prompt log-probs with the transformers oracle, with a tolerance the oracle justifies.

The yardstick is transformers' own bf16 forward of the same checkpoint on the same prompts: the 95th
percentile and the mean of |bf16 - fp32| teacher-forced log-prob over all prompt tokens. Another bf16
implementation rounds in other places, so a bf16 server may differ from fp32 by up to TOL_FACTOR times
each. The max is reported, not bounded: the tiny checkpoint's logits reach +-40, so improbable tokens
carry large absolute errors, and bf16 noise can flip a near-tie in a top-k routing decision, which moves
a few tokens by up to several nats (transformers' own bf16 run of the FP8 checkpoint does: max 5 nats).
"""

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from tests import oracle

TOL_FACTOR = 2.0
CLEAR_MARGIN = 0.5  # oracle top-1 minus top-2 logit that bf16 noise (max logit error ~0.2 here) cannot flip
# float32 servers: the oracle's log-probs up to rounding, and margins rounding (~1e-4) cannot flip
FP32_TOL = 1e-3
FP32_CLEAR_MARGIN = 0.05


@dataclass
class Gap:
    """Statistics of |a - b| over all scored tokens."""

    p95: float
    mean: float
    max: float = float("nan")

    @classmethod
    def between(cls, a: list[list[float | None]], b: list[list[float | None]]) -> "Gap":
        d = torch.tensor([abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb) if x is not None])
        return cls(float(d.quantile(0.95)), float(d.mean()), float(d.max()))

    def within(self, tol: "Gap") -> bool:
        return self.p95 <= tol.p95 and self.mean <= tol.mean

    def __str__(self):
        worst = "" if self.max != self.max else f" / max {self.max:.4f}"
        return f"p95 {self.p95:.4f} / mean {self.mean:.4f}{worst}"


def reference_and_tolerance(ckpt, prompt_ids) -> tuple[list[list[float | None]], Gap]:
    """(fp32 oracle prompt log-probs, bf16 tolerance) for the checkpoint (FP8: on its dequantised weights)."""
    fp32 = [oracle.prompt_logprobs(oracle.load_oracle(ckpt), ids) for ids in prompt_ids]
    bf16 = [oracle.prompt_logprobs(oracle.load_oracle(ckpt, torch.bfloat16), ids) for ids in prompt_ids]
    yardstick = Gap.between(fp32, bf16)
    tol = Gap(TOL_FACTOR * yardstick.p95, TOL_FACTOR * yardstick.mean)
    print(f"\ntransformers bf16 vs fp32 |d logprob|: {yardstick}; tolerance {tol}")
    return fp32, tol


def check_prompt_logprobs(server, ckpt, prompt_ids, label: str) -> None:
    """The bf16 server's prompt log-probs are within the bf16 tolerance of the fp32 oracle's."""
    fp32, tol = reference_and_tolerance(ckpt, prompt_ids)
    gap = Gap.between([server.prompt_logprobs(ids) for ids in prompt_ids], fp32)
    print(f"{label}, server bf16 vs oracle fp32 |d logprob|: {gap}")
    assert gap.within(tol)


def greedy_matches(server, model, prompt_ids, new_tokens: int, margin: float = CLEAR_MARGIN) -> int:
    """Asserts the server's greedy continuations equal the oracle's up to its first step with a top-1 -
    top-2 logit margin under ``margin``; returns the number of decode steps compared."""
    served = [server.generate(ids, max_new_tokens=new_tokens)["output_ids"] for ids in prompt_ids]
    return clear_steps_match(model, prompt_ids, served, new_tokens, margin)


def clear_steps_match(model, prompt_ids, served: list[list[int]], new_tokens: int, margin: float) -> int:
    """As greedy_matches, for continuations already served."""
    compared = 0
    for ids, got in zip(prompt_ids, served, strict=True):
        want, margins = oracle.greedy(model, ids, new_tokens)
        clear = next((i for i, m in enumerate(margins) if m < margin), new_tokens)
        assert got[:clear] == want[:clear], (ids, got, want, margins)
        compared += clear
    return compared


@contextlib.contextmanager
def zero_experts_scaled(model, factor: float):
    """The oracle with every zero-expert weight multiplied by ``factor``: 1 / routed_scaling_factor is
    SGLang 0.5.23's built-in scaling (x1), 2 an identity term added on both ranks of a TP/EP pair."""
    patched = []
    for layer in model.model.layers:
        experts = layer.mlp.experts

        def forward(h, ids, weights, _experts=experts, _forward=experts.forward):
            return _forward(h, ids, torch.where(ids >= _experts.num_routed_experts, weights * factor, weights))
        experts.forward = forward
        patched.append(experts)
    try:
        yield model
    finally:
        for experts in patched:
            del experts.forward


def fp32_gap(server, ckpt, prompt_ids) -> float:
    """max |served - fp32 oracle| prompt log-prob of a float32 server over all prompt tokens."""
    model = oracle.load_oracle(ckpt)
    return max(abs(a - b) for ids in prompt_ids
               for a, b in zip(server.prompt_logprobs(ids)[1:], oracle.prompt_logprobs(model, ids)[1:]))


def concurrent_equals_one_by_one(server, prompt_ids, one_by_one: list[list[int]], requests: int = 16) -> None:
    """``requests`` greedy requests (the prompts in turn) sent at once give the tokens ``one_by_one`` (each
    prompt's ``server.new_ids`` alone) has: float32 servers (in bf16 another batch shape can flip a
    near-tie of the random weights)."""
    new_tokens = len(one_by_one[0])
    with ThreadPoolExecutor(requests) as pool:
        together = list(pool.map(lambda i: server.new_ids(prompt_ids[i % len(prompt_ids)], new_tokens),
                                 range(requests)))
    assert together == [one_by_one[i % len(prompt_ids)] for i in range(requests)]
