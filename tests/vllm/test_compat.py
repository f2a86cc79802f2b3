"""The engine version check (longcat_vllm/compat.py): one warning naming the installed and the supported
versions outside the range, nothing inside it, and run once when vLLM loads our general plugin."""

import logging
import os
import subprocess
import sys

import pytest
import vllm

from longcat_vllm import compat

WARNING = ("longcat-flash-plugins: vLLM {} is outside the supported range >=0.32,<0.34 (transformers per "
           "release: 0.32: >=5.16.1,<5.20.0, 0.33: >=5.16.1,<5.21.0); LongCat is served by our classes, "
           "untested on this release")


def warnings_for(version: str, monkeypatch) -> list[str]:
    monkeypatch.setattr(vllm, "__version__", version)
    logger, records = logging.getLogger("test_compat"), []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        compat.check_engine_version(logger)
    finally:
        logger.removeHandler(handler)
    return [(r.levelno, r.getMessage()) for r in records]


@pytest.mark.parametrize("version", ["0.31.2", "0.34.0", "1.0.0"])
def test_warns_outside_the_range(version, monkeypatch):
    assert warnings_for(version, monkeypatch) == [(logging.WARNING, WARNING.format(version))]


@pytest.mark.parametrize("version", ["0.32.0", "0.33.1", "0.33.0rc1"])
def test_silent_inside_the_range(version, monkeypatch):
    assert warnings_for(version, monkeypatch) == []


def test_installed_vllm_is_supported():
    assert vllm.__version__ == "0.32.0" and compat.SUPPORTED == ">=0.32,<0.34"


LOAD = ("import sys, vllm; vllm.__version__ = sys.argv[1]; "
        "from vllm.plugins import load_general_plugins; load_general_plugins(); "
        "from vllm import ModelRegistry; print('LongcatCausalLM' in ModelRegistry.get_supported_archs())")


@pytest.mark.parametrize("version, lines", [("0.34.0", 1), ("0.32.0", 0)])
def test_checked_once_when_the_plugin_registers(version, lines):
    proc = subprocess.run([sys.executable, "-c", LOAD, version], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "VLLM_LOGGING_LEVEL": "INFO"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "True"  # the plugin registered
    assert log.count(WARNING.format(version)) == lines, log[-3000:]
