"""Which models longcat_sglang serves, and the class SGLang builds for each LongCat config.

The plugin's entry point runs in every SGLang process whatever the model; every hook it installs asks
here first and changes nothing unless our class serves the model (docs/sglang.md, "Other models").

SGLang loads all three LongCat architecture names with its ``longcat_flash`` config and builds its one
``LongcatFlashForCausalLM`` (``LongcatFlashForCausalLMNextN`` for the NEXTN draft), which switches on
config fields (n-gram embeddings, sparse indexer attention). Our classes implement Flash-Chat / -Thinking
/ Thinking-2601 and Flash-Lite (n-gram embeddings, both spellings: longcat_sglang/ngram.py), not sparse
attention, so SGLang's model resolution (``get_model_architecture``) is given back SGLang's own class,
captured before we register ours, for a config with ``index_topk``.
"""

import logging

from longcat_common.config import ARCHITECTURES, config_value, unsupported_reason

logger = logging.getLogger(__name__)

DRAFT_ARCHITECTURE = "LongcatFlashForCausalLMNextN"  # the MTP layer, for --speculative-algorithm NEXTN
# config.json names SGLang serves as LongCat (utils/hf_transformers/config.py, _LONGCAT_ARCHS), and the draft's
LONGCAT_ARCHITECTURES = frozenset(ARCHITECTURES) | {"LongcatFlashNgramForCausalLM", DRAFT_ARCHITECTURE}
REGISTERED = (ARCHITECTURES[0], DRAFT_ARCHITECTURE)  # the names SGLang's registry resolves LongCat by

_builtin: dict[str, type] = {}  # registry name -> SGLang's own class, captured before ours replaces it
_announced: set[tuple] = set()  # (model path, architecture): logged once per process


def serves(config) -> bool:
    """A config.json dict or SGLang's config object that longcat_sglang's classes serve."""
    return bool(set(config_value(config, "architectures") or ()) & LONGCAT_ARCHITECTURES) and unsupported_reason(config) is None


def serves_model(model_path: str | None) -> bool:
    """For the argument hooks, before SGLang reads the config: the checkpoint's config.json (local, or
    from the Hub / its cache, as SGLang will read it); False where it cannot be read (SGLang then says why)."""
    from transformers import PretrainedConfig

    if not model_path:
        return False
    try:
        config, _ = PretrainedConfig.get_config_dict(model_path)
    except Exception:
        return False
    return serves(config)


def serves_this_process() -> bool:
    """For the hooks that run while serving: the model of this SGLang process (its published server args)."""
    from sglang.srt.runtime_context import process_model_config

    return serves(process_model_config().hf_config)


def capture_builtin(registry) -> None:
    """Before our classes go into SGLang's ``ModelRegistry``: its own class for each name we replace."""
    for name in REGISTERED:
        _builtin.setdefault(name, registry.resolve_model_cls([name])[0])


def builtin_for_unsupported(resolved, model_config, *args, **kwargs):
    """AFTER hook of ``model_loader.utils.get_model_architecture(model_config) -> (class, arch)``: SGLang's
    own class for a LongCat config with a feature we do not implement. Every caller that reads the model
    class before building it (loader, ModelRunner's weight-load start-up, EPLB's expert layout, the
    tokenizer manager, the draft worker) goes through this function."""
    model_cls, arch = resolved
    reason = unsupported_reason(model_config.hf_config) if arch in _builtin else None
    if reason is None or model_cls is _builtin[arch]:
        return None
    builtin = _builtin[arch]
    if (model_config.model_path, arch) not in _announced:
        _announced.add((model_config.model_path, arch))
        logger.info("longcat-flash-plugins: config has %s, not implemented here: served by SGLang's built-in "
                    "%s (%s)", reason, builtin.__name__, builtin.__module__)
    return builtin, arch
