"""vLLM entry point (``vllm.general_plugins``, run in every vLLM process): the LongCat model classes and
the LongCat tool-call and reasoning parsers.

What registering changes for models other than LongCat (docs/vllm.md, "Other models"): entries under
LongCat's names only (model registry, config-map hooks, converters, model type), the parser names
``longcat`` / ``longcat_xml`` and the ``hf`` renderer, which checks roles for LongCat only. Everything that
runs (start-up check, metrics directory and collector, counting) starts from our config-map hook, which
vLLM calls for our architectures only.
"""

import logging

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


def register_parsers() -> None:
    """Lazy registration (imports nothing heavy). ``longcat`` replaces vLLM's built-in JSON parser.

    The API server loads the general plugins while it builds its argument parser
    (``AsyncEngineArgs.add_cli_args``), before it checks ``--tool-call-parser`` / ``--reasoning-parser``.
    (No ``vllm.platform_plugins`` entry point: vLLM runs those while ``vllm.config`` is half imported,
    where importing the parser managers fails on a circular import; docs/vllm-0.33.md.)
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


def register() -> None:
    from vllm import ModelRegistry
    from vllm.model_executor.models.config import MODELS_CONFIG_MAP
    from vllm.renderers.registry import RENDERER_REGISTRY
    from vllm.transformers_utils import config as vllm_hf_config
    from vllm.transformers_utils.model_arch_config_convertor import MODEL_ARCH_CONFIG_CONVERTORS

    from longcat_vllm.compat import check_engine_version
    from longcat_vllm.startup_check import LongcatStartupCheck
    from longcat_vllm.variants import hand_back_variants, keep_builtins

    check_engine_version(logger)
    keep_builtins(ModelRegistry, MODELS)  # before ours replace them: variants we lack go to vLLM's (variants.py)
    hand_back_variants(MODEL_ARCH_CONFIG_CONVERTORS, ModelRegistry, MODELS)
    for architecture, cls in MODELS.items():
        ModelRegistry.register_model(architecture, cls)
    for arch in ARCHITECTURES:  # Hub configs carry no model_type: vLLM maps the architecture (2601's is unknown)
        vllm_hf_config._ARCHITECTURE_TO_MODEL_TYPE.setdefault(arch, "longcat_flash")
        MODELS_CONFIG_MAP[arch] = LongcatStartupCheck  # checks the checkpoint before any worker starts
    logger.info("longcat-flash-plugins %s: %s registered for vLLM", __version__, ", ".join(MODELS))
    register_parsers()
    # the renderer of the default tokenizer mode, checking roles for LongCat-Flash only (longcat_vllm/renderer.py);
    # popped first as the parsers are: register() would warn that it overwrites vLLM's own
    RENDERER_REGISTRY.renderers.pop("hf", None)
    RENDERER_REGISTRY.register("hf", "longcat_vllm.renderer", "LongcatRenderer")
