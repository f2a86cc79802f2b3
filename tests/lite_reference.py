"""An engine's Flash-Lite requests against the reference forward (tests/common/reference_forward.py), teacher-forced.

A request is {"prompt", "prompt_logprobs" (None where not asked), "greedy", "logprobs"} (each generated
token's log-prob). One reference forward over prompt + greedy gives every position's log-probs: the
engine's must match them, and each greedy token must be the reference's top-1 given the engine's own
earlier tokens wherever that top-1 leads the runner-up by ``margin`` nats. For a bf16 engine, ``tie``
leaves out the positions where some layer's expert choice is within ``tie`` of a tie in the reference
(bf16 may pick the other expert there: one position of LITE_PROMPTS, 0.75 nats off, gaps 1e-3 and 1e-4).
"""

from functools import lru_cache

import torch

from tests.common import reference_forward as ref

CLEAR_MARGIN = 0.1
# A bf16 engine against the fp32 reference of the same (dequantised) weights: log-probs within BF16_TOL (measured
# 0.15 at most), greedy tokens where the reference's margin is 2 x BF16_TOL, positions whose expert choice is
# within ROUTING_TIE of a tie left out.
BF16_TOL = 0.25
ROUTING_TIE = 0.01


@lru_cache(maxsize=4)
def checkpoint(path: str):
    return ref.load_checkpoint(path)


@lru_cache(maxsize=256)
def _reference(path: str, seq: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probs [T, vocab], each position's smallest router gap over the layers [T])."""
    config, weights = checkpoint(path)
    stats = []
    logits = ref.final_hidden(config, weights, list(seq), stats=stats) @ weights["lm_head.weight"].T
    return logits.log_softmax(-1), torch.stack([s["gap"] for s in stats]).min(0).values


def compare(path, request: dict, tie: float = 0.0, margin: float = CLEAR_MARGIN) -> tuple[float, int, list[str]]:
    """(max |log-prob - reference| over the request's scored positions, greedy tokens checked, mismatches)."""
    prompt, greedy = request["prompt"], request["greedy"]
    seq = prompt + greedy
    lp, gap = _reference(str(path), tuple(seq))
    scored = [(i, got) for i, got in enumerate(request["prompt_logprobs"] or []) if i > 0]
    scored += [(len(prompt) + j, got) for j, got in enumerate(request["logprobs"])]
    diffs = [abs(got - lp[i - 1, seq[i]].item()) for i, got in scored if gap[i - 1] >= tie]
    checked, wrong = 0, []
    for j, tok in enumerate(greedy):
        top = lp[len(prompt) + j - 1].topk(2)
        if (top.values[0] - top.values[1]).item() >= margin and gap[len(prompt) + j - 1] >= tie:
            checked += 1
            if tok != top.indices[0].item():
                wrong.append(f"step {j}: engine {tok}, reference {top.indices[0].item()}")
    return max(diffs), checked, wrong
