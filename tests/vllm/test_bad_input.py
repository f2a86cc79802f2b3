"""Broken checkpoints fail at load with the plugin's one clear message (and the engine exits)."""

import pytest

from tests.bad_checkpoints import BAD_CHECKPOINTS, BAD_MTP_CHECKPOINTS

from .conftest import run_offline


@pytest.mark.parametrize("kind", list(BAD_CHECKPOINTS))
def test_bad_checkpoint_fails_with_clear_message(kind, tiny_ckpt, tmp_path):
    bad, message = BAD_CHECKPOINTS[kind](tiny_ckpt, tmp_path / "ckpt")
    result, log = run_offline({"model": str(bad)}, tmp_path, timeout=300)
    assert result is None
    assert message in log, log[-3000:]


@pytest.mark.parametrize("kind", list(BAD_MTP_CHECKPOINTS))
def test_bad_mtp_layer_fails_with_clear_message(kind, tiny_ckpt, tmp_path):
    bad, message = BAD_MTP_CHECKPOINTS[kind](tiny_ckpt, tmp_path / "ckpt")
    result, log = run_offline({"model": str(bad), "speculative": {"method": "mtp", "num_speculative_tokens": 1}},
                              tmp_path, timeout=300)
    assert result is None
    assert message in log, log[-3000:]
