"""The SGLang server itself with TP=2, and with TP=2 plus expert parallelism, on this CPU, against the oracle.

Attention heads, the dense MLPs and the vocabulary split over two ranks. ``--tp 2``: every expert's
intermediate dimension splits too (MoE-TP); ``--tp 2 --enable-ep-moe``: the experts split 8 + 8 instead
(``--enable-ep-moe`` is the plugin's alias for SGLang 0.5.23's ``--ep-size <tp>``). The ranks talk over
gloo: the plugin turns off the pynccl communicator SGLang opens even on gloo groups, where it stops the
CPU server at start. Each rank adds only its share of the experts' output; the identity (zero-expert)
term is added after the all-reduce, so it is counted once: added before, it would be doubled.
"""

import pytest

from tests import oracle
from tests.sglang.parity import Gap, greedy_matches, reference_and_tolerance, zero_experts_scaled
from tests.sglang.server import sglang_server


LAYOUTS = {"tp2": (["--tp", "2"], 1), "tp2-ep2": (["--tp", "2", "--enable-ep-moe"], 2)}


@pytest.fixture(scope="module", params=list(LAYOUTS))
def server(request, tiny_ckpt, tmp_path_factory):
    args, ep = LAYOUTS[request.param]
    with sglang_server(tiny_ckpt, tmp_path_factory.mktemp(f"sglang-{request.param}") / "server.log", args) as s:
        s.expected_ep = ep
        yield s


def test_both_ranks_serve_our_class(server):
    lines = server.log().splitlines()
    for rank in (0, 1):
        assert any(f" TP{rank}" in line and f"tp 2, moe ep {server.expected_ep}" in line for line in lines), rank


def test_prompt_logprobs_match_oracle_and_count_the_identity_term_once(server, tiny_ckpt, prompt_ids):
    fp32, tol = reference_and_tolerance(tiny_ckpt, prompt_ids)
    gap = Gap.between([server.prompt_logprobs(ids) for ids in prompt_ids], fp32)
    model = oracle.load_oracle(tiny_ckpt)
    with zero_experts_scaled(model, 2.0):
        twice = Gap.between([oracle.prompt_logprobs(model, ids) for ids in prompt_ids], fp32)
    print(f"TP=2 EP={server.expected_ep} server bf16 vs oracle fp32 |d logprob|: {gap}; "
          f"identity term on both ranks: {twice}")
    assert gap.within(tol)
    assert twice.p95 > 5 * tol.p95 and twice.mean > 5 * tol.mean


def test_greedy_matches_oracle_where_margin_is_clear(server, tiny_ckpt, prompt_ids):
    compared = greedy_matches(server, oracle.load_oracle(tiny_ckpt), prompt_ids[:3], 6)
    assert compared >= 6
