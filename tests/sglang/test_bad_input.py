"""Broken checkpoints stop the SGLang server with the plugin's one clear message.

Problems that need no tensor values stop ``launch_server`` before it starts any process (plugin.py's
``prepare_server_args`` hook): one of them runs as a whole server start, the others share one process that
runs the hooked ``prepare_server_args`` for each (server_args_run.py). A NaN / Inf weight stops the
scheduler while it loads. Heads that do not divide the TP size are no error on the CPU: SGLang pads them
(test_padded_sizes.py).
"""

import pytest

from tests.bad_checkpoints import AT_LOAD, BAD_CHECKPOINTS, STARTED
from tests.sglang.server import launch_expecting_failure
from tests.startup_errors import BAD_SWITCH, STARTUP
from tests.startup_errors import startup_errors as errors_in_one_process


@pytest.fixture(scope="module")
def startup_errors(request, tmp_path_factory):
    """{case: the error text} for every start-up case, from one server_args_run.py process."""
    return errors_in_one_process(request, tmp_path_factory.mktemp("sglang-startup"), "tests.sglang.server_args_run",
                                 BAD_SWITCH)


@pytest.mark.parametrize("kind", list(STARTUP) + list(BAD_SWITCH))
def test_refused_at_start_with_one_clear_line(kind, startup_errors):
    errors, messages = startup_errors
    assert errors[kind] is not None and "\n" not in errors[kind], errors[kind]
    assert errors[kind].startswith("ValueError: ") and messages[kind] in errors[kind], errors[kind]


@pytest.mark.parametrize("kind", STARTED + AT_LOAD)
def test_server_exits_with_one_clear_line(kind, request, tmp_path):
    source, write = BAD_CHECKPOINTS[kind]
    bad, message = write(request.getfixturevalue(source), tmp_path / "ckpt")
    code, log = launch_expecting_failure(bad, tmp_path / "server.log")
    assert code is not None, f"the server came up on a broken checkpoint:\n{log[-3000:]}"
    errors = [line for line in log.splitlines() if line.startswith("ValueError: ")]
    assert errors and all(message in line for line in errors), log[-3000:]
