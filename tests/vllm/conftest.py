"""vLLM session helpers: one engine subprocess per configuration, shared by the tests that read it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
SERVED_BY_US = "LongcatFlashForCausalLM served by longcat_vllm"
DRAFT_SERVED_BY_US = "LongCatFlashMTPModel served by longcat_vllm"
PROMPTS = [  # token ids of the tiny tokenizer's vocabulary, bos first
    [1, 17, 200, 45, 99, 300, 12, 7, 650, 88, 23, 400],
    [1, 5, 9, 33, 77, 100, 4, 8],
    [1, 301, 302, 303, 304, 305, 306, 307, 308, 309, 310, 311, 312, 313, 314, 315, 316, 317],
]
MAX_TOKENS = 8


def run_offline(spec: dict, tmp_path: Path, timeout: int = 600) -> tuple[dict | None, str]:
    """Runs offline_run.py on ``spec``; returns (its JSON result or None if it failed, its whole log).

    With ``capture_draft`` the result also holds "draft_calls": per prompt, the draft forwards' inputs
    and logits (offline_run.py)."""
    spec_file, out_file = tmp_path / "spec.json", tmp_path / "out.json"
    spec_file.write_text(json.dumps({"prompts": PROMPTS, "max_tokens": MAX_TOKENS, "enforce_eager": True,
                                     "dtype": "bfloat16", **spec}))
    env = {**os.environ, "VLLM_LOGGING_LEVEL": "INFO"}
    proc = subprocess.run([sys.executable, str(HERE / "offline_run.py"), str(spec_file), str(out_file)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    log = proc.stdout + proc.stderr
    if proc.returncode:
        return None, log
    result = json.loads(out_file.read_text())
    if (tmp_path / "draft_calls.pt").exists():
        import torch
        result["draft_calls"] = torch.load(tmp_path / "draft_calls.pt")
    return result, log


@pytest.fixture(scope="session")
def offline_engine(tmp_path_factory):
    """Cached runner: the same spec starts the engine once per session."""
    cache: dict[str, tuple[dict | None, str]] = {}

    def run(spec: dict):
        key = json.dumps(spec, sort_keys=True)
        if key not in cache:
            cache[key] = run_offline(spec, tmp_path_factory.mktemp("vllm"))
        return cache[key]
    return run


def plugins_off_env() -> dict:
    """``VLLM_PLUGINS`` naming every installed vLLM plugin but ours (vLLM's own LoRA resolvers, ...): vLLM
    as it runs without this package. (An empty value would also load none of vLLM's own.)"""
    from importlib.metadata import entry_points

    groups = ("vllm.general_plugins", "vllm.platform_plugins", "vllm.stat_logger_plugins", "vllm.io_processor_plugins")
    others = sorted({e.name for g in groups for e in entry_points(group=g) if not e.value.startswith("longcat_")})
    return {"VLLM_PLUGINS": ",".join(others)}
