"""DP attention, the layout of SGLang's large LongCat / DeepSeek deployments, on this CPU in float32.

``--tp 2 --dp 2 --enable-dp-attention`` (the recipe's spelling; SGLang 0.5.23 reads it as
``--attn-dp-size 2``): two DP ranks, each with its own scheduler and requests (SGLang's DP controller
hands them out in turn), attention over one rank each, the dense MLPs and the MoE tensor-parallel over
both on the two ranks' tokens gathered (longcat_sglang/dp_gather.py); with ``--enable-ep-moe`` (and DP
attention spelt ``--attn-dp-size 2``) the experts split 8 + 8 instead; without, each DP rank has its own
LM head (``--enable-dp-lm-head``) instead of one split over both. Prefills gather by all-reduce (SUM_LEN),
decodes by all-gather with every rank padded to the longest (MAX_LEN); one-by-one requests leave the
other rank idle, running a dummy batch. The engine's CPU stops on this path: longcat_sglang/dp_cpu.py.
"""

import re

import pytest
from transformers import AutoTokenizer

from tests import metrics_check, oracle
from tests.sglang.parity import FP32_CLEAR_MARGIN, FP32_TOL, clear_steps_match, concurrent_equals_one_by_one, fp32_gap
from tests.sglang.server import sglang_server

MODEL = "longcat-tiny"
# name -> (server arguments, expert-parallel size)
NEW_TOKENS = 8
LAYOUTS = {"dp2-dp-lm-head": (["--tp", "2", "--dp", "2", "--enable-dp-attention", "--enable-dp-lm-head"], 1),
           "dp2-ep2": (["--tp", "2", "--attn-dp-size", "2", "--enable-ep-moe"], 2)}


@pytest.fixture(scope="module", params=list(LAYOUTS))
def server(request, tiny_ckpt, tmp_path_factory):
    args, ep = LAYOUTS[request.param]
    log = tmp_path_factory.mktemp(f"sglang-{request.param}") / "server.log"
    with sglang_server(tiny_ckpt, log, [*args, "--dtype", "float32", "--served-model-name", MODEL,
                                        "--enable-metrics"]) as s:
        s.expected_ep = ep
        yield s


@pytest.fixture(scope="module")
def one_by_one(server, prompt_ids) -> list[list[int]]:
    """Each prompt's greedy continuation, requested alone."""
    return [server.new_ids(ids, NEW_TOKENS) for ids in prompt_ids]


def dp_rank_lines(server, rank: int, what: str) -> list[str]:
    return [line for line in server.log().splitlines() if re.search(rf" DP{rank} TP{rank}[^\]]*\] {what}", line)]


def test_every_rank_serves_our_class(server):
    for rank in (0, 1):
        assert any(f"tp 2, moe ep {server.expected_ep}, attn dp 2" in line
                   for line in dp_rank_lines(server, rank, "longcat-flash-plugins")), rank


def test_float32_equals_the_oracle_on_both_dp_ranks(server, tiny_ckpt, prompt_ids):
    gap = fp32_gap(server, tiny_ckpt, prompt_ids)
    print(f"\nDP attention 2, EP {server.expected_ep}, float32 vs oracle fp32: max |d logprob| = {gap:.2e}")
    assert gap <= FP32_TOL
    assert dp_rank_lines(server, 0, "Prefill batch") and dp_rank_lines(server, 1, "Prefill batch")


def test_greedy_equals_the_oracle(one_by_one, tiny_ckpt, prompt_ids):
    model = oracle.load_oracle(tiny_ckpt)
    assert clear_steps_match(model, prompt_ids, one_by_one, NEW_TOKENS, FP32_CLEAR_MARGIN) >= 40


def test_sixteen_concurrent_requests_equal_one_by_one(server, prompt_ids, one_by_one):
    concurrent_equals_one_by_one(server, prompt_ids, one_by_one)


@pytest.mark.parametrize("concurrent", [False, True], ids=["one-by-one", "concurrent"])
def test_zero_expert_metrics_count_each_token_once(server, tiny_ckpt, concurrent):
    """/metrics equals the reference for the tokens forwarded: global TP rank 0 counts the gathered tokens
    of both DP ranks, without the DP padding rows (an idle rank's dummy rows one by one, the shorter
    rank's padding when batched)."""
    tok = AutoTokenizer.from_pretrained(tiny_ckpt)

    def generate(prompt):
        ids = tok.encode(prompt)
        return ids, server.new_ids(ids, 6)
    served, expected, _ = metrics_check.served_vs_reference(server.url, MODEL, tiny_ckpt, generate, concurrent)
    assert served == expected
