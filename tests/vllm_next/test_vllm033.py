"""Our vLLM adapter against vLLM 0.33's own Python, without its CUDA build (envs/vllm-next.txt: the 0.33
wheel on torch's CPU build; docs/vllm-0.33.md says what this covers and what cannot run without a GPU).

vLLM's plugin loader runs our ``vllm.general_plugins`` entry point (``register()``) in this process and again
in the subprocess where vLLM inspects a model class; the architecture names must then resolve to the classes
named in INTENDED, whatever the plugin does inside.
"""

import importlib
import importlib.metadata
import logging
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

import vllm
from longcat_vllm import compat

INTENDED = {  # architecture -> the module:class vLLM 0.33 must build for it once our plugin has registered
    "LongcatFlashForCausalLM": "longcat_vllm.model:LongcatFlashForCausalLM",
    "LongcatCausalLM": "longcat_vllm.model:LongcatFlashForCausalLM",  # Thinking-2601
    "LongCatFlashMTPModel": "longcat_vllm.mtp:LongcatFlashMTP",  # the MTP draft
    "LongcatFlashNgramForCausalLM": "longcat_vllm.model:LongcatFlashForCausalLM",  # Flash-Lite (n-gram embeddings)
}
OUR_MODULES = ["model", "moe", "mtp", "metrics", "startup_check", "renderer", "parsers", "loading", "rope", "ngram"]
# ModelRegistry.resolve_model_cls / inspect_model_cls read only model_impl from the model config for an
# architecture that is registered (vllm/model_executor/models/registry.py in 0.33)
AUTO_IMPL = SimpleNamespace(model_impl="auto")


def qualified(cls) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """vLLM's ModelRegistry after vLLM's own loader ran every installed general plugin, ours among them.
    vLLM caches what it inspects in a subprocess under VLLM_CACHE_ROOT: a fresh root makes the subprocess run
    once per class (registry.py: _LazyRegisteredModel.inspect_model_cls)."""
    from vllm import ModelRegistry
    from vllm.plugins import load_general_plugins

    with pytest.MonkeyPatch.context() as env:
        env.setenv("VLLM_CACHE_ROOT", str(tmp_path_factory.mktemp("vllm-cache")))
        load_general_plugins()
        yield ModelRegistry


def test_vllm_is_033():
    assert vllm.__version__.startswith("0.33"), vllm.__version__


def test_compat_accepts_033_without_warning(caplog):
    logger = logging.getLogger("test_vllm033")
    with caplog.at_level(logging.WARNING, logger="test_vllm033"):
        compat.check_engine_version(logger)
    assert caplog.records == []


def test_compat_states_033s_transformers_pin():
    pins = [Requirement(r) for r in importlib.metadata.requires("vllm")]
    transformers = [r for r in pins if r.name == "transformers" and r.marker is None]
    assert [r.specifier for r in transformers] == [SpecifierSet(compat.TRANSFORMERS["0.33"])]


def test_entry_point_installed():
    plugins = importlib.metadata.entry_points(group="vllm.general_plugins")
    assert [ep.value for ep in plugins if ep.name == "longcat_flash"] == ["longcat_vllm.plugin:register"]


@pytest.mark.parametrize("module", OUR_MODULES)
def test_our_module_imports(module):
    importlib.import_module(f"longcat_vllm.{module}")


@pytest.mark.parametrize("module", OUR_MODULES)
def test_our_classes_implement_033s_abstract_methods(module):
    """Our subclasses of vLLM's abstract bases (router, stat logger, parsers, renderer) can be built on 0.33:
    an abstract method new in 0.33 would only fail when vLLM instantiates the class."""
    mod = importlib.import_module(f"longcat_vllm.{module}")
    ours = [cls for cls in vars(mod).values() if isinstance(cls, type) and cls.__module__ == mod.__name__]
    assert {cls.__name__: sorted(getattr(cls, "__abstractmethods__", ())) for cls in ours} == \
        {cls.__name__: [] for cls in ours}


@pytest.mark.parametrize("architecture", INTENDED)
def test_architecture_resolves_to_intended_class(registry, architecture):
    cls, resolved = registry.resolve_model_cls([architecture], model_config=AUTO_IMPL)
    assert (qualified(cls), resolved) == (INTENDED[architecture], architecture)


@pytest.mark.parametrize("architecture", INTENDED)
def test_architecture_inspected_in_a_fresh_vllm_process(registry, architecture):
    """vLLM inspects a lazily registered class in a subprocess that loads the general plugins first
    (registry.py: _run_in_subprocess)."""
    info, resolved = registry.inspect_model_cls([architecture], model_config=AUTO_IMPL)
    assert (resolved, info.is_text_generation_model, info.is_pooling_model) == (architecture, True, False)


def test_platform_detection_logs_no_failure_of_ours():
    """``import vllm.config`` resolves the platform in 0.33 (vllm/utils/torch_utils.py: PIN_MEMORY), which runs
    every ``vllm.platform_plugins`` entry point; a plugin that raises is logged at WARNING with its traceback."""
    env = {k: v for k, v in os.environ.items() if k != "VLLM_TARGET_DEVICE"}  # "cpu" would skip platform plugins
    proc = subprocess.run([sys.executable, "-c", "import vllm.config"], capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    assert "longcat" not in proc.stderr.lower(), proc.stderr
