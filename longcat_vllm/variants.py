"""LongCat variants this package does not implement are served as without the plugin: by vLLM's own class.

``longcat_common.config.unsupported_features`` names the config fields that turn on a feature we lack
(sparse indexer attention). vLLM takes a model's class from ``hf_config.architectures``:
``ModelConfig`` inspects it through the architecture converter of the config's model type
(``MODEL_ARCH_CONFIG_CONVERTORS``), run once while the front process builds its config, and the workers
resolve it again from the same ``hf_config``, pickled into them (``get_model_architecture``). So:

- ``keep_builtins`` (plugin.register, every process, before our classes replace vLLM's) keeps vLLM's own
  class of each name we take over under an alias, ``BUILTIN + name``;
- our converter (``hand_back_variants``) renames, in a config with such fields, every name we took over
  that vLLM has a class for to that alias, before vLLM inspects it, with one log line;
- a name vLLM has no class for (``LongcatCausalLM`` in vLLM 0.32 / 0.33) stays ours, and our start-up
  check refuses the config naming the fields (startup_check.refuse_unsupported).

Flash-Lite (``LongcatFlashNgramForCausalLM``, n-gram embeddings) is ours too (longcat_vllm/ngram.py); under that
name a config with sparse attention fields goes back to vLLM's own n-gram class.
"""

import logging

from longcat_common.config import unsupported_reason

BUILTIN = "VllmBuiltin"  # alias prefix; the name keeps its suffix (ForCausalLM: vLLM's default runner)
MODEL_TYPES = ("longcat_flash", "longcat_flash_mtp")  # the main model's, the MTP draft's (vLLM's speculative config)
logger = logging.getLogger("vllm.longcat_flash_plugins")


def keep_builtins(registry, names) -> None:
    """Alias vLLM's registration of each of ``names`` it has (not ours: idempotent)."""
    for name in names:
        entry = registry.models.get(name)
        if entry is not None and not getattr(entry, "module_name", "").startswith("longcat_vllm."):
            registry.models.setdefault(BUILTIN + name, entry)


def hand_back_variants(convertors: dict, registry, names) -> None:
    """Wraps the converters of LongCat's model types so that they call ``hand_back`` first (idempotent)."""

    class HandBack:
        def convert(self, *args, **kwargs):
            hand_back(self.hf_config, registry, names)
            return super().convert(*args, **kwargs)

    for model_type in MODEL_TYPES:
        base = convertors[model_type]
        if not getattr(base, "hands_back", False):
            convertors[model_type] = type(base.__name__, (HandBack, base), {"hands_back": True})


def hand_back(hf_config, registry, names) -> None:
    """Renames ``hf_config.architectures`` in place where the config has fields we do not implement."""
    reason = unsupported_reason(hf_config)
    if not reason:
        return
    architectures = getattr(hf_config, "architectures", None) or []
    renamed = [BUILTIN + a if a in names and BUILTIN + a in registry.models else a for a in architectures]
    for name in (a for a, r in zip(architectures, renamed) if a != r):
        logger.info("longcat-flash-plugins: config has %s, not implemented here: served by vLLM's built-in %s",
                    reason, name)
    hf_config.architectures = renamed
