"""Broken checkpoints fail with the plugin's one clear message (and the engine exits).

Problems that need no tensor values stop vLLM in its front process while it builds its config
(longcat_vllm/startup_check.py), before any worker starts: one of them runs as a whole engine start, the
others share one process that builds vLLM's engine config for each (engine_config_run.py). A NaN / Inf
weight stops the worker's load.
"""

import pytest

from tests.bad_checkpoints import AT_LOAD, BAD_CHECKPOINTS, BAD_MTP_CHECKPOINTS, STARTED
from tests.startup_errors import BAD_SWITCH, STARTUP
from tests.startup_errors import startup_errors as errors_in_one_process

from .conftest import run_offline

# vLLM pads nothing but the vocabulary: sizes that do not split over the TP ranks are refused at start.
UNSPLITTABLE = {
    "heads": ("tiny_ckpt", "LongCat-Flash: num_attention_heads 4 does not split over tensor parallel size 3"),
    "ffn": ("draft_ckpt", "LongCat-Flash: ffn_hidden_size 416 does not split over tensor parallel size 3"),
}


def clear_error_lines(log: str) -> list[str]:
    """A worker's ``ValueError: ...`` lines, and the line pydantic gives the ValueError of a config check
    in the front process (``Value error, ...``, vLLM's own checks too)."""
    return [line for line in log.splitlines() if "ValueError: " in line or "Value error, " in line]


@pytest.fixture(scope="module")
def startup_errors(request, tmp_path_factory):
    """{case: the error text} for every start-up case, from one engine_config_run.py process."""
    extra = {kind: (source, message, {"tp": 3}) for kind, (source, message) in UNSPLITTABLE.items()} | BAD_SWITCH
    return errors_in_one_process(request, tmp_path_factory.mktemp("vllm-startup"), "tests.vllm.engine_config_run",
                                 extra)


@pytest.mark.parametrize("kind", list(STARTUP) + list(UNSPLITTABLE) + list(BAD_SWITCH))
def test_refused_at_start_with_one_clear_line(kind, startup_errors):
    errors, messages = startup_errors
    assert errors[kind] is not None, f"vLLM built its config for {kind}"
    lines = clear_error_lines(errors[kind])
    assert len(lines) == 1 and messages[kind] in lines[0], errors[kind]


@pytest.mark.parametrize("kind", STARTED + AT_LOAD)
def test_engine_exits_with_one_clear_line(kind, request, tmp_path):
    source, write = BAD_CHECKPOINTS[kind]
    bad, message = write(request.getfixturevalue(source), tmp_path / "ckpt")
    result, log = run_offline({"model": str(bad)}, tmp_path, timeout=300)
    assert result is None
    lines = clear_error_lines(log)
    assert lines and all(message in line for line in lines), log[-3000:]


@pytest.mark.parametrize("kind", list(BAD_MTP_CHECKPOINTS))
def test_bad_mtp_layer_fails_with_clear_message(kind, tiny_ckpt, tmp_path):
    bad, message = BAD_MTP_CHECKPOINTS[kind](tiny_ckpt, tmp_path / "ckpt")
    result, log = run_offline({"model": str(bad), "speculative": {"method": "mtp", "num_speculative_tokens": 1}},
                              tmp_path, timeout=300)
    assert result is None
    assert message in log, log[-3000:]
