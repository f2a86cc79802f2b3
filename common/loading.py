"""The checkpoint stream both adapters load from: checked, FP8 dequantised where asked, MLA scale folded."""

from collections.abc import Callable, Iterable, Iterator

import torch

from .checkpoint import CheckpointChecker, ParamTarget, param_target
from .config import LongcatConfig
from .fp8 import Fp8CheckpointDequantizer
from .mla import fold_lora_scale


def checkpoint_targets(config: LongcatConfig, weights: Iterable[tuple[str, torch.Tensor]], dequantize_fp8: bool,
                       may_be_absent: Callable[[str], bool] | None = None
                       ) -> Iterator[tuple[ParamTarget, torch.Tensor]]:
    """(parameter target, tensor) for every main-model checkpoint tensor.

    Raises the checker's clear errors (unexpected / mis-shaped / missing tensor, except those
    ``may_be_absent`` excuses), skips ``model.mtp.*``, turns block-FP8 weight + weight_scale_inv pairs
    into bf16 weights when ``dequantize_fp8``, and folds the MLA LoRA scale into the latent-norm weights.
    """
    stream = CheckpointChecker(config, may_be_absent)(weights)
    if dequantize_fp8:
        stream = Fp8CheckpointDequantizer(config.fp8_block_size(), torch.bfloat16)(stream)
    for name, tensor in stream:
        yield param_target(name), fold_lora_scale(name, tensor, config)
