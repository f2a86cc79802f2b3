"""SGLang with LongCat's official NEXTN flags on CPU, bf16, on the FP8 layout of the good-draft preset: the
draft's FP8 weights are dequantised at load, and its logits stay within bf16 noise of the reference."""

import pytest
import torch

from tests.common import reference_forward as ref
from tests.sglang.mtp_checks import DRAFT_ACTIVE, capturing_server, nextn_args, served_draft_rows
from tests.sglang.parity import Gap, reference_and_tolerance


@pytest.fixture(scope="module")
def server(draft_fp8_ckpt, tmp_path_factory):
    args = nextn_args(draft_fp8_ckpt, "bfloat16")
    with capturing_server(draft_fp8_ckpt, tmp_path_factory.mktemp("sglang-nextn-fp8"), args) as s:
        yield s


def test_fp8_draft_in_bf16_within_bf16_noise(server, draft_fp8_ckpt, prompt_ids):
    """The log-prob each draft row gives the token it should predict, against the fp32 reference on the
    dequantised weights, within twice transformers' own bf16-vs-fp32 gap on the target model
    (tests/sglang/parity.py)."""
    assert f"{DRAFT_ACTIVE} (device cpu, tp 1, fp8 dequantised to bf16" in server.log()
    cfg, w = ref.load_checkpoint(draft_fp8_ckpt)
    served, want, targets = served_draft_rows(server, cfg, w, prompt_ids[3:5])
    rows = torch.arange(len(targets))
    gap = Gap.between([torch.log_softmax(served, -1)[rows, targets].tolist()],
                      [torch.log_softmax(want, -1)[rows, targets].tolist()])
    _, tol = reference_and_tolerance(draft_fp8_ckpt, prompt_ids[3:5])
    print(f"draft log-probs (bf16 server, FP8 checkpoint) vs fp32 reference, {len(rows)} rows: {gap}; "
          f"tolerance {tol}")
    assert len(rows) >= 8
    assert gap.within(tol)
