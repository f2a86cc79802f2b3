"""Broken checkpoints stop the SGLang server at load with the plugin's one clear message.

Each case starts a real server on a broken copy of the tiny checkpoint (tests/bad_checkpoints.py) and
expects it to exit by itself, its output naming the problem.
"""

import pytest

from tests.bad_checkpoints import BAD_CHECKPOINTS
from tests.sglang.server import launch_expecting_failure


@pytest.mark.parametrize("kind", list(BAD_CHECKPOINTS))
def test_bad_checkpoint_fails_at_load_with_clear_message(kind, tiny_ckpt, tmp_path):
    bad, message = BAD_CHECKPOINTS[kind](tiny_ckpt, tmp_path / "ckpt")
    code, log = launch_expecting_failure(bad, tmp_path / "server.log")
    assert code is not None, f"the server came up on a broken checkpoint:\n{log[-3000:]}"
    assert message in log, log[-3000:]
    errors = [line for line in log.splitlines() if line.startswith("ValueError: ")]
    assert errors and all(message in line for line in errors), errors
