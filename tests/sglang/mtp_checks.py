"""MTP speculative decoding through the SGLang server: launch flags, a capturing server, and the checks
against the engine-free reference (tests/common/reference_mtp.py) shared by the test_mtp* modules.

The reference's greedy tokens are plain greedy decoding, so "served with NEXTN == reference" is "with
NEXTN == without" for an exact fp32 server (tests/sglang/test_parity.py checks the server without
speculation against the oracle).
"""

from contextlib import contextmanager

import torch

from longcat_sglang.mtp import ACTIVE_MESSAGE as DRAFT_ACTIVE
from tests.common import reference_mtp
from tests.sglang.draft_capture import hook_specs, read_records
from tests.sglang.server import sglang_server

__all__ = ["DRAFT_ACTIVE", "nextn_args", "capturing_server", "generate_checked", "served_draft_rows"]


def nextn_args(ckpt, dtype: str = "float32") -> list[str]:
    """The flags of LongCat-Flash's deployment guide (and the served dtype)."""
    return ["--speculative-algorithm", "NEXTN", "--speculative-draft-model-path", str(ckpt),
            "--speculative-num-steps", "1", "--speculative-eagle-topk", "1", "--speculative-num-draft-tokens", "2",
            "--dtype", dtype]


@contextmanager
def capturing_server(ckpt, directory, args=()):
    """A NEXTN server whose draft model's logits are recorded (``server.capture``, see draft_capture.py)."""
    capture = directory / "draft_records.pkl"
    with sglang_server(ckpt, directory / "server.log", [*args, "--forward-hooks", hook_specs(capture)]) as s:
        assert DRAFT_ACTIVE in s.log(), "SGLang did not build longcat_sglang's LongcatFlashForCausalLMNextN"
        s.capture = capture
        yield s


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


def served_draft_rows(server, cfg, w, prompts, new_tokens: int = 8):
    """(served draft logits [R, vocab], reference draft logits [R, vocab], the token each row predicts [R])
    for every draft row SGLang computed from verified tokens: the one after prefill (row t = prompt end)
    and the verified rows of each draft-extend after a verify step."""
    served, want, targets = [], [], []
    for ids in prompts:
        server.capture.unlink(missing_ok=True)
        seq = ids + server.generate(ids, max_new_tokens=new_tokens)["output_ids"]
        reference = reference_mtp.mtp_logits(cfg, w, seq)  # row t: token t + 1 and h_t -> token t + 2
        for record in read_records(server.capture):
            after_verify = record["num_accept_tokens"] is not None
            valid = record["num_accept_tokens"][0] if after_verify else 1
            rows = slice(0, valid) if after_verify else slice(-valid, None)
            for t, token, row in zip(record["positions"][rows], record["input_ids"][rows], record["logits"][rows]):
                if t + 2 >= len(seq):  # the last step's rows can run past the returned tokens
                    continue
                assert token == seq[t + 1]
                served.append(row)
                want.append(reference[t])
                targets.append(seq[t + 2])
    return torch.stack(served), torch.stack(want), torch.tensor(targets)
