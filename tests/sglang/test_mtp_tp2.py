"""SGLang with LongCat's official NEXTN flags on CPU, TP=2 (3 of the good-draft preset's 6 heads per rank),
fp32: our draft class serves on both ranks, greedy tokens and the accepted-draft count equal the
reference's."""

import pytest

from tests.common import reference_forward as ref
from tests.sglang.mtp_checks import DRAFT_ACTIVE, generate_checked, nextn_args
from tests.sglang.server import sglang_server


@pytest.fixture(scope="module")
def server(draft_ckpt, tmp_path_factory):
    log = tmp_path_factory.mktemp("sglang-nextn-tp2") / "server.log"
    with sglang_server(draft_ckpt, log, [*nextn_args(draft_ckpt), "--tp", "2"]) as s:
        yield s


def test_tp2_greedy_and_accepted_drafts_equal_the_reference(server, draft_ckpt, prompt_ids):
    lines = server.log().splitlines()
    assert all(any(DRAFT_ACTIVE in line and f" TP{rank}" in line and "tp 2" in line for line in lines)
               for rank in (0, 1))
    cfg, w = ref.load_checkpoint(draft_ckpt)
    for ids in prompt_ids[:2]:
        generate_checked(server, cfg, w, ids, 16)
