"""The ``vllm.general_plugins`` entry point: runs in every vLLM process (API server, engine, workers)."""

import logging

from longcat_common import __version__

from longcat_common.config import ARCHITECTURES

logger = logging.getLogger("vllm.longcat_flash_plugins")  # under "vllm" to use its log handler


def register() -> None:
    from vllm import ModelRegistry
    from vllm.transformers_utils import config as vllm_hf_config

    for arch in ARCHITECTURES:
        ModelRegistry.register_model(arch, "longcat_vllm.model:LongcatFlashForCausalLM")
        # Hub configs carry no model_type: vLLM maps the architecture (Thinking-2601's is not in its table)
        vllm_hf_config._ARCHITECTURE_TO_MODEL_TYPE.setdefault(arch, "longcat_flash")
    logger.info("longcat-flash-plugins %s: %s registered for vLLM", __version__, ", ".join(ARCHITECTURES))
