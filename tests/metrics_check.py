"""Shared by both engines' metrics tests: scrape /metrics, and the reference's zero-slot count for the
tokens a server forwarded (docs/metrics.md)."""

import time
import urllib.request

from longcat_common import metrics
from tests.common import reference_forward


def scrape(base_url: str, model_name: str) -> dict[str, float]:
    """The longcat_* samples of ``model_name`` on ``base_url``/metrics (name -> value)."""
    text = urllib.request.urlopen(base_url + "/metrics", timeout=30).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("longcat_") and f'model_name="{model_name}"' in line:
            out[line.split("{")[0]] = float(line.rsplit(" ", 1)[1])
    return out


def counts(sample: dict[str, float]) -> tuple[int, int]:
    return int(sample.get(metrics.ZERO_SLOTS + "_total", 0)), int(sample.get(metrics.SLOTS + "_total", 0))


def reference_counts(ckpt, sequences: list[list[int]]) -> tuple[int, int]:
    """(zero slots, slots) the reference forward routes for each sequence of forwarded token ids."""
    cfg, w = reference_forward.load_checkpoint(ckpt)
    zero = slots = 0
    for ids in sequences:
        stats = []
        reference_forward.final_hidden(cfg, w, ids, stats=stats)
        zero += sum(int(s["is_zero"].sum()) for s in stats)
        slots += sum(s["is_zero"].numel() for s in stats)
    return zero, slots


METRIC_PROMPTS = ["Routing check one", "A second routing check", "Third"]


def served_vs_reference(base_url: str, model_name: str, ckpt, generate) -> tuple[tuple[int, int], tuple[int, int]]:
    """Serve METRIC_PROMPTS through ``generate(prompt) -> (prompt ids, generated ids)``; return the
    /metrics counter deltas and the reference's counts for the tokens forwarded (the prompt and every
    generated token but the last, which is sampled and never fed back)."""
    before = counts(scrape(base_url, model_name))
    forwarded = []
    for prompt in METRIC_PROMPTS:
        prompt_ids, generated = generate(prompt)
        forwarded.append(list(prompt_ids) + list(generated[:-1]))
    expected = reference_counts(ckpt, forwarded)
    deadline = time.monotonic() + 30
    while True:  # the workers publish their totals every 0.5 s
        after = counts(scrape(base_url, model_name))
        delta = (after[0] - before[0], after[1] - before[1])
        if delta[1] >= expected[1] or time.monotonic() > deadline:
            return delta, expected
        time.sleep(0.5)
