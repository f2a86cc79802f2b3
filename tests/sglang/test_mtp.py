"""SGLang with LongCat's official NEXTN flags on CPU, TP=1, fp32, good-draft preset (its draft agrees with
the target ~90%, so the accepted-draft count tells a right draft from a wrong one): our draft class
serves, greedy tokens and SGLang's accepted-draft count equal the reference's, and the draft model's
logits (recorded through SGLang's ``--forward-hooks``) equal the reference MTP forward's."""

import pytest

from tests.common import reference_forward as ref
from tests.sglang.mtp_checks import capturing_server, generate_checked, nextn_args, served_draft_rows

NEW_TOKENS = 16


@pytest.fixture(scope="module")
def server(draft_ckpt, tmp_path_factory):
    with capturing_server(draft_ckpt, tmp_path_factory.mktemp("sglang-nextn"), nextn_args(draft_ckpt)) as s:
        yield s


@pytest.fixture(scope="module")
def reference(draft_ckpt):
    return ref.load_checkpoint(draft_ckpt)


def test_greedy_and_accepted_drafts_equal_the_reference(server, reference, prompt_ids):
    assert "Triton interpreter (TRITON_INTERPRET=1)" in server.log()
    cfg, w = reference
    accepted = drafted = 0
    for ids in prompt_ids[:3]:
        run = generate_checked(server, cfg, w, ids, NEW_TOKENS)["reference"]
        accepted, drafted = accepted + run.accepted, drafted + run.drafted
    print(f"good-draft preset: SGLang accepted {accepted} of {drafted} draft tokens, as the reference predicts")
    assert accepted >= 0.8 * drafted


def test_draft_logits_equal_the_reference(server, reference, prompt_ids):
    cfg, w = reference
    served, want, _ = served_draft_rows(server, cfg, w, prompt_ids[3:5])
    worst = float((served - want).abs().max())
    print(f"draft logits (fp32 server vs fp32 reference): {len(served)} rows, max |d| {worst:.2e}")
    assert len(served) >= 8
    assert worst < 1e-3
