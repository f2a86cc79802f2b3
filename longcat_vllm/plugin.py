"""The ``vllm.general_plugins`` entry point: runs in every vLLM process (API server, engine, workers)."""

import logging

from longcat_common import __version__

ARCHITECTURE = "LongcatFlashForCausalLM"
logger = logging.getLogger("vllm.longcat_flash_plugins")  # under "vllm" to use its log handler


def register() -> None:
    from vllm import ModelRegistry

    ModelRegistry.register_model(ARCHITECTURE, "longcat_vllm.model:LongcatFlashForCausalLM")
    logger.info("longcat-flash-plugins %s: %s registered for vLLM", __version__, ARCHITECTURE)
