"""A checkpoint whose sizes SGLang pads on the CPU at a TP size that splits none of them, served by a real
server and matched against the oracle.

With ``--device cpu`` SGLang pads the attention heads and the dense and expert intermediate sizes that do
not split over the TP ranks or, for a block-FP8 checkpoint, are not multiples of the 128 block
(``adjust_config_with_unaligned_cpu_tp``); its embedding layers pad the vocabulary. Our model is built with
the padded sizes, as SGLang's built-in models are, the checkpoint is checked against its own sizes and
zero-padded at load. Here: the odd preset at ``--tp 3``: heads 5 -> 6, FFN 416 -> 480, expert FFN 96
(32 per rank), vocabulary 1061 padded by the embedding layers. Elsewhere: FP8 at TP=1 (FFN 416 -> 512,
expert FFN 96 -> 128) in test_mtp_fp8.py, bf16 at TP=2 (FFN 416 -> 448, expert FFN 96 -> 128) in test_mtp_tp2.py.
"""

import pytest

from longcat_common.testing.tiny import write_checkpoint
from longcat_sglang.model import ACTIVE_MESSAGE
from tests import oracle
from tests.sglang.parity import check_prompt_logprobs, greedy_matches
from tests.sglang.server import sglang_server

PADDING = "padded by SGLang: num_attention_heads 5->6, ffn_hidden_size 416->480"


@pytest.fixture(scope="module")
def odd_ckpt(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("odd"), preset="odd", seed=0)


@pytest.fixture(scope="module")
def server(odd_ckpt, tmp_path_factory):
    with sglang_server(odd_ckpt, tmp_path_factory.mktemp("sglang-odd-tp3") / "server.log", ["--tp", "3"]) as s:
        yield s


def test_every_rank_serves_our_class_with_the_padded_sizes(server):
    lines = [line for line in server.log().splitlines() if ACTIVE_MESSAGE in line]
    assert len(lines) == 3 and all(PADDING in line and " TP" in line for line in lines), lines


def test_prompt_logprobs_match_oracle(server, odd_ckpt, prompt_ids):
    check_prompt_logprobs(server, odd_ckpt, prompt_ids, "odd preset, TP=3")


def test_greedy_matches_oracle_where_margin_is_clear(server, odd_ckpt, prompt_ids):
    assert greedy_matches(server, oracle.load_oracle(odd_ckpt), prompt_ids[:2], 6) >= 6
