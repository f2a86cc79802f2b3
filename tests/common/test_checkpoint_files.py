"""The engine-free parts of the bad-checkpoint catalogue: the start-up check of a checkpoint directory,
the per-tensor NaN / Inf check, and the zero-padding to an engine's padded sizes."""

import math

import pytest
import torch

from longcat_common.checkpoint import non_finite
from longcat_common.checkpoint_files import check_checkpoint_dir
from longcat_common.loading import zero_padded
from tests.bad_checkpoints import AT_LOAD, BAD_CHECKPOINTS


def test_good_checkpoints_pass(tiny_ckpt, tiny_fp8_ckpt):
    for ckpt in (tiny_ckpt, tiny_fp8_ckpt):
        assert check_checkpoint_dir(ckpt).n_routed_experts == 16


@pytest.mark.parametrize("kind", [k for k in BAD_CHECKPOINTS if k not in AT_LOAD])
def test_start_up_check_names_the_problem(kind, request, tmp_path):
    source, write = BAD_CHECKPOINTS[kind]
    bad, message = write(request.getfixturevalue(source), tmp_path / "ckpt")
    with pytest.raises(ValueError, match="^[^\n]*$") as error:
        check_checkpoint_dir(bad)
    assert message in str(error.value)


def test_non_finite_counts_nan_and_inf_in_every_float_dtype():
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        t = torch.randn(64, 96).to(dtype)
        assert non_finite(t) is None
        t[3, 5], t[7, 1], t[0, 0] = math.nan, -math.inf, math.inf
        assert non_finite(t) == "1 NaN and 2 Inf values"
    fp8 = (torch.randn(64, 96) * 100).to(torch.float8_e4m3fn)  # saturating values are finite (448)
    assert non_finite(fp8) is None
    fp8.view(torch.uint8)[1, 2], fp8.view(torch.uint8)[4, 4] = 0x7F, 0xFF  # +NaN, -NaN
    assert non_finite(fp8) == "2 NaN values"
    assert non_finite(torch.empty(0, 4)) is None and non_finite(torch.empty(3, device="meta")) is None


def test_zero_padded_appends_zeros_where_the_engine_padded():
    w = torch.randn(5, 7)
    out = dict(zero_padded([("a", w), ("b", w)], {"a": (8, 9)}))
    assert out["a"].shape == (8, 9) and torch.equal(out["a"][:5, :7], w)
    assert not out["a"][5:].any() and not out["a"][:, 7:].any()
    assert out["b"] is w
