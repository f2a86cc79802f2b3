"""Shared by both engines' metrics tests: scrape /metrics, and the reference's zero-slot count for the
tokens a server forwarded (docs/metrics.md)."""

import json
import shutil
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from safetensors.torch import load_file, save_file

from longcat_common import metrics
from longcat_common.config import LongcatConfig
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


def reference_counts(ckpt, sequences: list[list[int]], starts: list[int] | None = None) -> tuple[int, int]:
    """(zero slots, slots) the reference forward routes for each sequence of token ids, at its positions
    from ``starts[i]`` on (default: every position; the earlier ones are context the server did not
    forward, e.g. a prompt prefix loaded from a KV cache)."""
    cfg, w = reference_forward.load_checkpoint(ckpt)
    zero = slots = 0
    for ids, start in zip(sequences, starts or [0] * len(sequences)):
        stats = []
        reference_forward.final_hidden(cfg, w, ids, stats=stats)
        zero += sum(int(s["is_zero"][start:].sum()) for s in stats)
        slots += sum(s["is_zero"][start:].numel() for s in stats)
    return zero, slots


def settled_counts(base_url: str, model_name: str) -> tuple[int, int]:
    """The counters once earlier requests' last counts are published: equal over two flush intervals
    (a shared server's previous test may have finished a moment ago)."""
    last = counts(scrape(base_url, model_name))
    while True:
        time.sleep(2 * metrics.FLUSH_INTERVAL)
        now = counts(scrape(base_url, model_name))
        if now == last:
            return now
        last = now


METRIC_PROMPTS = ["Routing check one", "A second routing check", "Third"]


def served_vs_reference(base_url: str, model_name: str, ckpt, generate, concurrent: bool = False
                        ) -> tuple[tuple[int, int], tuple[int, int], list[list[int]]]:
    """Serve METRIC_PROMPTS through ``generate(prompt) -> (prompt ids, generated ids)``, one by one or all at
    once (batched: uneven batches, padding); return the /metrics counter deltas, the reference's counts for
    the tokens forwarded (the prompt and every generated token but the last, which is sampled and never fed
    back) and those tokens."""
    before = settled_counts(base_url, model_name)
    with ThreadPoolExecutor(len(METRIC_PROMPTS) if concurrent else 1) as pool:
        served = list(pool.map(generate, METRIC_PROMPTS))
    forwarded = [list(prompt_ids) + list(generated[:-1]) for prompt_ids, generated in served]
    expected = reference_counts(ckpt, forwarded)
    return delta_reaching(base_url, model_name, before, expected), expected, forwarded


def delta_reaching(base_url: str, model_name: str, before: tuple[int, int], expected: tuple[int, int]
                   ) -> tuple[int, int]:
    """The counters' change since ``before``, read once it has reached ``expected``'s slot count or after
    30 s: the workers publish their totals every FLUSH_INTERVAL, later under load."""
    deadline = time.monotonic() + 30
    while True:
        after = counts(scrape(base_url, model_name))
        delta = (after[0] - before[0], after[1] - before[1])
        if delta[1] >= expected[1] or time.monotonic() > deadline:
            return delta
        time.sleep(metrics.FLUSH_INTERVAL)


ROUTER_BIAS_SUFFIX = "mlp.router.e_score_correction_bias"
ZERO_BIAS_RAISE = 1.0  # in units of 1 / (expert count), a mean routing probability


def favour_zero_experts(ckpt) -> Path:
    """Raises every router's zero-expert bias entries of ``ckpt`` in place, so that its layers route
    more slots to zero experts; returns an untouched copy made first (the scripted agent checkpoints'
    greedy text does not depend on the layers, so their other tests are unaffected)."""
    ckpt = Path(ckpt)
    unbiased = shutil.copytree(ckpt, ckpt.with_name(ckpt.name + "-unbiased"))
    config = LongcatConfig.from_dict(json.loads((ckpt / "config.json").read_text()))
    for shard in sorted(ckpt.glob("*.safetensors")):
        tensors = load_file(shard)
        for name, t in tensors.items():
            if name.endswith(ROUTER_BIAS_SUFFIX):
                t[config.n_routed_experts:] += ZERO_BIAS_RAISE / config.num_experts_total
        save_file(tensors, shard, metadata={"format": "pt"})
    return unbiased


def check_share_follows_the_bias(base_url: str, model_name: str, ckpt, unbiased, generate) -> None:
    """On a server of ``ckpt`` (``favour_zero_experts`` applied, ``unbiased`` its copy from before):
    /metrics equals the reference for the tokens served, and the share is clearly above what the same
    tokens route to zero experts without the raised bias."""
    served, expected, forwarded = served_vs_reference(base_url, model_name, ckpt, generate)
    assert served == expected, (served, expected)
    before = metrics.zero_ratio(*reference_counts(unbiased, forwarded))
    print(f"\nzero-slot share: {metrics.zero_ratio(*served):.3f} served, {before:.3f} without the raised bias")
    assert metrics.zero_ratio(*served) > before + 0.1
