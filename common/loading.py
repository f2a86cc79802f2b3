"""The checkpoint stream both adapters load from: checked, FP8 dequantised where asked, MLA scale folded."""

from collections.abc import Iterable, Iterator

import torch

from .checkpoint import CheckpointChecker, ParamTarget, mtp_param_target, param_target
from .config import LongcatConfig
from .fp8 import Fp8CheckpointDequantizer
from .mla import fold_lora_scale


def checkpoint_targets(config: LongcatConfig, weights: Iterable[tuple[str, torch.Tensor]],
                       dequantize_fp8: bool, mtp: bool = False) -> Iterator[tuple[ParamTarget, torch.Tensor]]:
    """(parameter target, tensor) for every main-model checkpoint tensor, or with ``mtp`` every MTP tensor.

    Raises the checker's clear errors (unexpected / mis-shaped / missing tensor), skips the other part
    of the checkpoint (``model.mtp.*`` for the main model, the rest for the MTP draft), turns block-FP8
    weight + weight_scale_inv pairs into bf16 weights when ``dequantize_fp8``, and folds the MLA LoRA
    scale into the latent-norm weights (the MTP attention's too). MTP targets follow
    ``checkpoint.mtp_param_target``.
    """
    stream = CheckpointChecker(config, mtp)(weights)
    if dequantize_fp8:
        stream = Fp8CheckpointDequantizer(config.fp8_block_size(), torch.bfloat16)(stream)
    target = mtp_param_target if mtp else param_target
    for name, tensor in stream:
        yield target(name), fold_lora_scale(name, tensor, config)
