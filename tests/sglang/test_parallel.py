"""The SGLang server itself with TP=2, and with TP=2 plus expert parallelism over two "nodes", on this CPU,
against the oracle.

Attention heads, the dense MLPs and the vocabulary split over two ranks. ``--tp 2``: every expert's
intermediate dimension splits too (MoE-TP); ``--tp 2 --enable-ep-moe``: the experts split 8 + 8 instead
(``--enable-ep-moe`` is the plugin's alias for SGLang 0.5.23's ``--ep-size <tp>``), here as LongCat's
two-node recipe runs it: ``--nnodes 2 --node-rank 0|1 --dist-init-addr``, one process (one rank, one
core) per node on loopback, in float32. The ranks talk over gloo: the plugin turns off the pynccl
communicator SGLang opens even on gloo groups, where it stops the CPU server at start. Each rank adds
only its share of the experts' output; the identity (zero-expert) term is added after the all-reduce,
so it is counted once: added before, it would be doubled.
"""

import pytest

from tests import oracle
from tests.sglang.parity import (FP32_CLEAR_MARGIN, FP32_TOL, Gap, clear_steps_match, concurrent_equals_one_by_one,
                                 fp32_gap, greedy_matches, reference_and_tolerance, zero_experts_scaled)
from tests.sglang.server import sglang_server, two_node_server

# name -> (server arguments, expert-parallel size, float32 on two nodes)
LAYOUTS = {"tp2": (["--tp", "2"], 1, False),
           "tp2-ep2-2nodes": (["--tp", "2", "--enable-ep-moe", "--dtype", "float32"], 2, True)}


@pytest.fixture(scope="module", params=list(LAYOUTS))
def server(request, tiny_ckpt, tmp_path_factory):
    args, ep, two_nodes = LAYOUTS[request.param]
    logs = tmp_path_factory.mktemp(f"sglang-{request.param}")
    with (two_node_server(tiny_ckpt, logs, args) if two_nodes else
          sglang_server(tiny_ckpt, logs / "server.log", args)) as s:
        s.expected_ep, s.fp32 = ep, two_nodes
        yield s


@pytest.fixture(scope="module")
def fp32_server(server):
    if not server.fp32:
        pytest.skip("the float32 checks run on the two-node server")
    return server


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
    print(f"TP=2 EP={server.expected_ep} server {'fp32' if server.fp32 else 'bf16'} vs oracle fp32 "
          f"|d logprob|: {gap}; identity term on both ranks: {twice}")
    assert gap.within(tol)
    assert twice.p95 > 5 * tol.p95 and twice.mean > 5 * tol.mean


def test_greedy_matches_oracle_where_margin_is_clear(server, tiny_ckpt, prompt_ids):
    compared = greedy_matches(server, oracle.load_oracle(tiny_ckpt), prompt_ids[:3], 6)
    assert compared >= 6


@pytest.fixture(scope="module")
def one_by_one(fp32_server, prompt_ids) -> list[list[int]]:
    """Each prompt's greedy continuation (8 tokens), requested alone."""
    return [fp32_server.new_ids(ids, 8) for ids in prompt_ids]


def test_two_nodes_float32_equal_the_oracle(fp32_server, one_by_one, tiny_ckpt, prompt_ids):
    gap = fp32_gap(fp32_server, tiny_ckpt, prompt_ids)
    print(f"\ntwo nodes, TP=2 EP=2, float32 vs oracle fp32: max |d logprob| = {gap:.2e}")
    assert gap <= FP32_TOL
    assert clear_steps_match(oracle.load_oracle(tiny_ckpt), prompt_ids, one_by_one, 8, FP32_CLEAR_MARGIN) >= 40


def test_two_nodes_sixteen_concurrent_requests_equal_one_by_one(fp32_server, prompt_ids, one_by_one):
    concurrent_equals_one_by_one(fp32_server, prompt_ids, one_by_one)
