"""Issue 18: data parallel 2, with and without expert parallel, as the two-node recipe on loopback
(dp_servers.py: vLLM's own CLI, node 1 ``--headless``), fp32, compiled mode asked for as the recipe does.

Each server set runs the DP all-gather of the MoE (cpu_collectives.py) and the expert numbering after it
(moe.map_ids_in_cpu_experts); without EP every expert is split over both ranks (no expert map). vLLM
cannot compile that all-gather on the CPU, so the plugin runs them eager (startup_check.py) and says so."""

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests import metrics_check, oracle

from .conftest import PROMPTS, SERVED_BY_US
from .dp_servers import two_node_server

REQUESTS = PROMPTS * 3  # 9 concurrent requests: vLLM's DP load balancer sends them to both ranks
LAYOUTS = {"dp2-ep2": (["--enable-expert-parallel"], ("Worker_DP0_EP0", "Worker_DP1_EP1")),
           "dp2": ([], ("Worker_DP0", "Worker_DP1"))}
EAGER_LINE = "data parallel on the CPU backend runs eager"


@pytest.fixture(scope="module", params=list(LAYOUTS))
def dp_ep(request, tiny_ckpt, tmp_path_factory):
    flags, workers = LAYOUTS[request.param]
    with two_node_server(tiny_ckpt, tmp_path_factory.mktemp(f"vllm-{request.param}"), flags) as (base, logs):
        yield base, logs, workers


def _complete(base, ids, **kw) -> dict:
    body = json.dumps({"model": "longcat-tiny", "prompt": ids, "temperature": 0, **kw}).encode()
    request = urllib.request.Request(base + "/v1/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as r:
        return json.loads(r.read())["choices"][0]


def test_every_rank_serves_our_class_eager(dp_ep):
    _, logs, workers = dp_ep
    text = [log.read_text() for log in logs]
    for log, worker in zip(text, workers):
        assert worker in log and SERVED_BY_US in log and EAGER_LINE in log


def _rank_slots(logs) -> dict[str, int]:
    """Slots each DP rank's counting worker has published: its <pid>.json in the shared metrics directory."""
    return {f.name: json.loads(f.read_text())["slots"] for f in (logs[0].parent / "metrics").glob("*.json")}


def test_prompt_logprobs_match_the_oracle_on_both_ranks(dp_ep, tiny_ckpt):
    base, logs, _ = dp_ep
    zero_before = metrics_check.settled_counts(base, "longcat-tiny")
    ranks_before = _rank_slots(logs)
    with ThreadPoolExecutor(len(REQUESTS)) as pool:
        got = list(pool.map(lambda ids: _complete(base, ids, max_tokens=1, prompt_logprobs=0)["prompt_logprobs"],
                            REQUESTS))
    model = oracle.load_oracle(tiny_ckpt)
    worst = max(abs(lp[t][str(ids[t])]["logprob"] - want[t])
                for ids, lp in zip(REQUESTS, got) for t, want in [(t, oracle.prompt_logprobs(model, ids))
                                                                  for t in range(1, len(ids))])
    print(f"\n{logs[0].parent.name} fp32: max |prompt log-prob - oracle| {worst:.2e}")
    assert worst < 1e-3
    # every prompt token forwarded once, on one rank: the counters' sum equals the reference's
    expected = metrics_check.reference_counts(tiny_ckpt, REQUESTS)
    assert metrics_check.delta_reaching(base, "longcat-tiny", zero_before, expected) == expected
    served_by_rank = [n - ranks_before.get(name, 0) for name, n in _rank_slots(logs).items()]
    assert len(served_by_rank) == 2 and min(served_by_rank) > 0, served_by_rank  # both DP ranks served


def test_greedy_equals_oracle_and_concurrent_equals_one_by_one(dp_ep, tiny_ckpt):
    base = dp_ep[0]
    model = oracle.load_oracle(tiny_ckpt)
    prompts = [p + [20 + i] for i in range(6) for p in PROMPTS][:16]

    def greedy(ids):
        return _complete(base, ids, max_tokens=6, ignore_eos=True, return_token_ids=True)["token_ids"]
    one_by_one = [greedy(p) for p in prompts]
    with ThreadPoolExecutor(16) as pool:
        assert list(pool.map(greedy, prompts)) == one_by_one
    for ids, new in zip(prompts[:3], one_by_one):
        want, margins = oracle.greedy(model, ids, 6)
        clear = next((i for i, m in enumerate(margins) if m < 0.1), 6)
        assert new[:clear] == want[:clear]
