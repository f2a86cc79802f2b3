"""The ``vllm.general_plugins`` entry point: runs in every vLLM process (API server, engine, workers)."""

import logging

from longcat_common import __version__

MODELS = {  # vLLM architecture name -> our class (overrides vLLM's built-in of the same name)
    "LongcatFlashForCausalLM": "longcat_vllm.model:LongcatFlashForCausalLM",
    "LongCatFlashMTPModel": "longcat_vllm.mtp:LongcatFlashMTP",  # the MTP draft (speculative "method": "mtp")
}
logger = logging.getLogger("vllm.longcat_flash_plugins")  # under "vllm" to use its log handler


def register() -> None:
    from vllm import ModelRegistry

    for architecture, cls in MODELS.items():
        ModelRegistry.register_model(architecture, cls)
    logger.info("longcat-flash-plugins %s: %s registered for vLLM", __version__, ", ".join(MODELS))
