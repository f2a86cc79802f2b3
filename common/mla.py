"""MLA pieces LongCat-Flash adds to DeepSeek-V3's attention.

LoRA scaling: the normalised q latent is multiplied by sqrt(H / q_lora_rank) and the normalised KV
latent by sqrt(H / kv_lora_rank) (k_pe is not). Both norms feed a bias-free linear (or the cache), so
the factor is folded once into ``q_a_layernorm.weight`` / ``kv_a_layernorm.weight`` at load; the cached
latent is then the scaled one and absorbed-MLA kernels need nothing special.
"""

import torch

from .config import LongcatConfig

Q_NORM, KV_NORM = "q_a_layernorm.weight", "kv_a_layernorm.weight"


def lora_norm_scale(name: str, config: LongcatConfig) -> float:
    """The factor a checkpoint tensor must be multiplied by at load (1.0 for every other tensor)."""
    q_scale, kv_scale = config.mla_lora_scales()
    if name.endswith(Q_NORM):
        return q_scale
    if name.endswith(KV_NORM):
        return kv_scale
    return 1.0


def fold_lora_scale(name: str, tensor: torch.Tensor, config: LongcatConfig) -> torch.Tensor:
    """Returns the checkpoint tensor ``name`` with its MLA LoRA factor folded in, as a new fp32 tensor.

    The product stays fp32: rounding it back to the checkpoint's bf16 moves every latent-norm weight by
    up to 0.35% and puts 0.002-0.02 nats between an fp32 engine and the oracle. The engine's weight
    loader casts it to the parameter's dtype (one rounding for bf16 models, none for fp32).
    """
    scale = lora_norm_scale(name, config)
    return tensor if scale == 1.0 else tensor.float() * scale
