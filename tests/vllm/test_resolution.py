"""The class vLLM loads for each LongCat architecture name, with our plugins loaded and without, as a
literal table: a vLLM release that moves LongCat elsewhere (vLLM PR #53811 would route it through the
Transformers backend and delete the native MTP draft; PR #48302 would add a LongcatCausalLM class) fails
here by name. Each table is read in its own process (registering would leak into this one).
"""

import json
import os
import subprocess
import sys

import pytest

from .conftest import plugins_off_env

OURS, OUR_DRAFT = "longcat_vllm.model:LongcatFlashForCausalLM", "longcat_vllm.mtp:LongcatFlashMTP"
VLLM_FLASH = "vllm.model_executor.models.longcat_flash:LongcatFlashForCausalLM"
VLLM_NGRAM = "vllm.model_executor.models.longcat_flash_ngram:LongcatFlashNgramForCausalLM"
VLLM_DRAFT = "vllm.model_executor.models.longcat_flash_mtp:LongCatFlashMTP"
# name -> the class vLLM loads for it (None: not registered)
WITH_PLUGIN = {
    "LongcatFlashForCausalLM": OURS,
    "LongcatCausalLM": OURS,
    "LongcatFlashNgramForCausalLM": OURS,
    "LongCatFlashMTPModel": OUR_DRAFT,
    # vLLM's own classes kept for the variants we hand back (longcat_vllm/variants.py)
    "VllmBuiltinLongcatFlashForCausalLM": VLLM_FLASH,
    "VllmBuiltinLongcatCausalLM": None,
    "VllmBuiltinLongcatFlashNgramForCausalLM": VLLM_NGRAM,
    "VllmBuiltinLongCatFlashMTPModel": VLLM_DRAFT,
}
WITHOUT_PLUGIN = {
    "LongcatFlashForCausalLM": VLLM_FLASH,
    "LongcatCausalLM": None,
    "LongcatFlashNgramForCausalLM": VLLM_NGRAM,
    "LongCatFlashMTPModel": VLLM_DRAFT,
    "VllmBuiltinLongcatFlashForCausalLM": None,
    "VllmBuiltinLongcatCausalLM": None,
    "VllmBuiltinLongcatFlashNgramForCausalLM": None,
    "VllmBuiltinLongCatFlashMTPModel": None,
}
READ = """
import json, sys
from vllm.plugins import load_general_plugins
from vllm.model_executor.models import ModelRegistry
load_general_plugins()
loaded = {name: ModelRegistry._try_load_model_cls(name) for name in json.loads(sys.argv[1])}
print(json.dumps({name: cls and f"{cls.__module__}:{cls.__qualname__}" for name, cls in loaded.items()}))
"""


def registry_table(env: dict) -> dict:
    proc = subprocess.run([sys.executable, "-c", READ, json.dumps(list(WITH_PLUGIN))], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("env, table", [({}, WITH_PLUGIN), (plugins_off_env(), WITHOUT_PLUGIN)],
                         ids=["with-plugin", "without-plugin"])
def test_resolution_table(env, table):
    assert registry_table(env) == table
