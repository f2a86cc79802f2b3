"""The SGLang server itself with TP=2 and expert parallelism on this CPU, against the oracle.

``--tp 2 --enable-ep-moe``: attention heads, the dense MLPs and the vocabulary split over two ranks;
the routed experts split 8 + 8 over the same ranks (``--enable-ep-moe`` is the plugin's alias for
``--ep-size <tp>``, which SGLang 0.5.23 calls it). The ranks talk over gloo: the plugin turns off the
pynccl communicator SGLang opens even on gloo groups, where it stops the CPU server at start.
Each rank adds only its experts' output; the identity (zero-expert) term is added after the all-reduce,
so it is counted once: added before, it would be doubled and the log-probs would leave the tolerance.
"""

import pytest

from tests import oracle
from tests.sglang.parity import Gap, greedy_matches, reference_and_tolerance
from tests.sglang.server import sglang_server


@pytest.fixture(scope="module")
def server(tiny_ckpt, tmp_path_factory):
    log = tmp_path_factory.mktemp("sglang-tp2-ep2") / "server.log"
    with sglang_server(tiny_ckpt, log, ["--tp", "2", "--enable-ep-moe"]) as s:
        yield s


def test_both_ranks_serve_our_class_with_expert_parallelism(server):
    log = server.log()
    for rank in (0, 1):
        assert any(f" TP{rank} " in line and "tp 2, moe ep 2" in line for line in log.splitlines()), rank


def test_prompt_logprobs_match_oracle(server, tiny_ckpt, prompt_ids):
    fp32, tol = reference_and_tolerance(tiny_ckpt, prompt_ids)
    gap = Gap.between([server.prompt_logprobs(ids) for ids in prompt_ids], fp32)
    print(f"TP=2 EP=2 server bf16 vs oracle fp32 |d logprob|: {gap}")
    assert gap.within(tol)


def test_greedy_matches_oracle_where_margin_is_clear(server, tiny_ckpt, prompt_ids):
    compared = greedy_matches(server, oracle.load_oracle(tiny_ckpt), prompt_ids[:3], 6)
    assert compared >= 6
