"""Broken checkpoints stop the SGLang server at load with the plugin's one clear message.

Each case starts a real server on a broken copy of a generated checkpoint (tests/bad_checkpoints.py) and
expects it to exit by itself, its output naming the problem in one line. Problems that need no tensor
values stop ``launch_server`` before it starts any process (plugin.py's prepare_server_args hook); a NaN /
Inf weight stops the scheduler while it loads. Heads that do not divide the TP size are no error on the
CPU: SGLang pads them (test_padded_sizes.py).
"""

import pytest

from tests.bad_checkpoints import BAD_CHECKPOINTS
from tests.sglang.server import launch_expecting_failure


@pytest.mark.parametrize("kind", list(BAD_CHECKPOINTS))
def test_bad_checkpoint_fails_at_load_with_clear_message(kind, request, tmp_path):
    source, write = BAD_CHECKPOINTS[kind]
    bad, message = write(request.getfixturevalue(source), tmp_path / "ckpt")
    code, log = launch_expecting_failure(bad, tmp_path / "server.log")
    assert code is not None, f"the server came up on a broken checkpoint:\n{log[-3000:]}"
    assert message in log, log[-3000:]
    errors = [line for line in log.splitlines() if line.startswith("ValueError: ")]
    assert errors and all(message in line for line in errors), errors
