"""MTP speculative decoding in the SGLang server on CPU, with LongCat's official NEXTN flags, against the
engine-free reference (tests/common/reference_mtp.py).

One fp32 server per layout: TP=1 on the good-draft preset (the draft agrees with the target ~90%, so the
accepted-draft count tells a right draft from a wrong one) and TP=2 on the tiny preset (its 4 heads
split over 2 ranks; its random draft is rarely accepted). The TP=1 server also records the draft
model's logits through SGLang's ``--forward-hooks`` (tests/sglang/draft_capture.py).
"""

import pytest
import torch

from longcat_sglang.mtp import ACTIVE_MESSAGE as DRAFT_ACTIVE
from tests.common import reference_forward as ref
from tests.common import reference_mtp
from tests.sglang.draft_capture import hook_specs, read_records
from tests.sglang.server import sglang_server

NEW_TOKENS = 16


def nextn_args(ckpt, dtype: str = "float32") -> list[str]:
    """The flags of LongCat-Flash's deployment guide (and the served dtype)."""
    return ["--speculative-algorithm", "NEXTN", "--speculative-draft-model-path", str(ckpt),
            "--speculative-num-steps", "1", "--speculative-eagle-topk", "1", "--speculative-num-draft-tokens", "2",
            "--dtype", dtype]


@pytest.fixture(scope="module")
def draft_server(draft_ckpt, tmp_path_factory):
    d = tmp_path_factory.mktemp("sglang-nextn")
    capture = d / "draft_records.pt"
    args = [*nextn_args(draft_ckpt), "--forward-hooks", hook_specs(capture)]
    with sglang_server(draft_ckpt, d / "server.log", args) as s:
        s.capture = capture
        yield s


@pytest.fixture(scope="module")
def draft_reference(draft_ckpt):
    return ref.load_checkpoint(draft_ckpt)


def generate_checked(server, cfg, w, ids: list[int], new_tokens: int) -> dict:
    """One greedy request: the served tokens must be the reference's, and SGLang's count of verify steps
    and accepted draft tokens the reference's too. Returns the response."""
    want = reference_mtp.speculative_greedy(cfg, w, ids, new_tokens, 1)
    out = server.generate(ids, max_new_tokens=new_tokens)
    meta = out["meta_info"]
    assert out["output_ids"] == want.tokens, (ids, out["output_ids"], want.tokens)
    assert (meta["spec_verify_ct"], meta["spec_num_correct_drafts"]) == (len(want.rounds), want.accepted), meta
    out["reference"] = want
    return out


def test_our_draft_class_serves(draft_server):
    log = draft_server.log()
    assert DRAFT_ACTIVE in log, "SGLang did not build longcat_sglang's LongcatFlashForCausalLMNextN"


def test_greedy_and_accepted_drafts_equal_the_reference(draft_server, draft_reference, prompt_ids):
    cfg, w = draft_reference
    accepted = drafted = 0
    for ids in prompt_ids[:3]:
        run = generate_checked(draft_server, cfg, w, ids, NEW_TOKENS)["reference"]
        accepted, drafted = accepted + run.accepted, drafted + run.drafted
    print(f"good-draft preset: SGLang accepted {accepted} of {drafted} draft tokens, as the reference predicts")
    assert accepted >= 0.8 * drafted


def test_draft_logits_equal_the_reference(draft_server, draft_reference, prompt_ids):
    """Every draft row SGLang computed from verified tokens: the one after prefill (row t = prompt end) and
    the verified rows of each draft-extend after a verify step."""
    cfg, w = draft_reference
    rows = worst = 0
    for ids in prompt_ids[3:5]:
        draft_server.capture.unlink(missing_ok=True)
        out = draft_server.generate(ids, max_new_tokens=8)
        seq = ids + out["output_ids"]
        want = reference_mtp.mtp_logits(cfg, w, seq)  # row t: token t + 1 and h_t -> token t + 2
        for record in read_records(draft_server.capture):
            valid = record["num_accept_tokens"][0] if record["num_accept_tokens"] else 1
            positions = record["positions"][-valid:] if record["num_accept_tokens"] is None \
                else record["positions"][:valid]
            logits = record["logits"][-valid:] if record["num_accept_tokens"] is None else record["logits"][:valid]
            for t, row in zip(positions, logits):
                assert record["input_ids"][record["positions"].index(t)] == seq[t + 1]
                diff = float((row - want[t]).abs().max())
                worst, rows = max(worst, diff), rows + 1
    print(f"draft logits (fp32 server vs fp32 reference): {rows} rows, max |d| {worst:.2e}")
    assert rows >= 8
    assert worst < 1e-3


@pytest.fixture(scope="module")
def tp2_server(tiny_ckpt, tmp_path_factory):
    d = tmp_path_factory.mktemp("sglang-nextn-tp2")
    with sglang_server(tiny_ckpt, d / "server.log", [*nextn_args(tiny_ckpt), "--tp", "2"]) as s:
        yield s


def test_tp2_greedy_and_accepted_drafts_equal_the_reference(tp2_server, tiny_ckpt, prompt_ids):
    lines = tp2_server.log().splitlines()
    assert all(any(DRAFT_ACTIVE in line and f" TP{rank}" in line for line in lines) for rank in (0, 1))
    cfg, w = ref.load_checkpoint(tiny_ckpt)
    for ids in prompt_ids[:2]:
        generate_checked(tp2_server, cfg, w, ids, 8)
