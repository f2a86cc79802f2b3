"""vLLM entry points: the model (``vllm.general_plugins``, run in every vLLM process) and the LongCat
tool-call and reasoning parsers (also from ``vllm.platform_plugins``, see ``register_parsers``)."""

import logging
import os
import tempfile

from longcat_common import __version__

from longcat_common.config import ARCHITECTURES

# vLLM architecture name -> our class (overrides vLLM's built-in of the same name)
MODELS = {**{arch: "longcat_vllm.model:LongcatFlashForCausalLM" for arch in ARCHITECTURES},
          "LongCatFlashMTPModel": "longcat_vllm.mtp:LongcatFlashMTP"}  # the MTP draft (speculative "method": "mtp")
logger = logging.getLogger("vllm.longcat_flash_plugins")  # under "vllm" to use its log handler

TOOL_PARSERS = {"longcat": "LongcatJsonToolParser", "longcat_xml": "LongcatXmlToolParser"}
REASONING_PARSERS = {"longcat": "LongcatReasoningParser"}
PARSERS_REGISTERED = "longcat-flash-plugins: tool parsers longcat, longcat_xml and reasoning parser longcat registered"
_parsers_registered = False
METRICS_DIR_ENV = "LONGCAT_METRICS_DIR"


def register_parsers() -> None:
    """Lazy registration (imports nothing heavy). ``longcat`` replaces vLLM's built-in JSON parser.

    The API server checks ``--tool-call-parser`` / ``--reasoning-parser`` before it builds the engine
    arguments, which is where it loads the general plugins; it resolves the platform earlier, loading
    every ``vllm.platform_plugins`` entry point, so this is registered there too (returning None:
    it activates no platform).
    """
    global _parsers_registered
    if _parsers_registered:
        return
    from vllm.reasoning import ReasoningParserManager
    from vllm.tool_parsers import ToolParserManager

    for name, cls in TOOL_PARSERS.items():
        ToolParserManager.tool_parsers.pop(name, None)
        ToolParserManager.register_lazy_module(name, "longcat_vllm.parsers", cls)
    for name, cls in REASONING_PARSERS.items():
        ReasoningParserManager.reasoning_parsers.pop(name, None)
        ReasoningParserManager.register_lazy_module(name, "longcat_vllm.parsers", cls)
    _parsers_registered = True
    logger.info(PARSERS_REGISTERED)


def ensure_metrics_dir() -> None:
    """Where the workers publish their zero-slot counts (longcat_vllm/metrics.py); set in the first vLLM
    process, before it starts the engine, so that every engine and worker process inherits it."""
    if METRICS_DIR_ENV not in os.environ:
        os.environ[METRICS_DIR_ENV] = tempfile.mkdtemp(prefix="longcat-metrics-")


def register_parsers_as_platform_plugin() -> None:
    register_parsers()
    ensure_metrics_dir()  # the API server process loads no general plugin before it starts the engine
    return None


def register() -> None:
    from vllm import ModelRegistry
    from vllm.model_executor.models.config import MODELS_CONFIG_MAP
    from vllm.renderers.registry import RENDERER_REGISTRY
    from vllm.transformers_utils import config as vllm_hf_config

    from longcat_vllm.startup_check import LongcatStartupCheck

    for architecture, cls in MODELS.items():
        ModelRegistry.register_model(architecture, cls)
    for arch in ARCHITECTURES:  # Hub configs carry no model_type: vLLM maps the architecture (2601's is unknown)
        vllm_hf_config._ARCHITECTURE_TO_MODEL_TYPE.setdefault(arch, "longcat_flash")
        MODELS_CONFIG_MAP[arch] = LongcatStartupCheck  # checks the checkpoint before any worker starts
    logger.info("longcat-flash-plugins %s: %s registered for vLLM", __version__, ", ".join(MODELS))
    register_parsers()
    ensure_metrics_dir()
    # the renderer of the default tokenizer mode, checking roles for LongCat-Flash only (longcat_vllm/renderer.py);
    # popped first as the parsers are: register() would warn that it overwrites vLLM's own
    RENDERER_REGISTRY.renderers.pop("hf", None)
    RENDERER_REGISTRY.register("hf", "longcat_vllm.renderer", "LongcatRenderer")
