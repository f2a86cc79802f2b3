"""The checkpoint stream both adapters load from: checked, FP8 dequantised where asked, MLA scale folded."""

from collections.abc import Callable, Iterable, Iterator

import torch

from .checkpoint import CheckpointChecker, ParamTarget, checkpoint_shapes, mtp_param_target, param_target
from .config import LongcatConfig
from .fp8 import Fp8CheckpointDequantizer
from .mla import fold_lora_scale


def checkpoint_targets(config: LongcatConfig, weights: Iterable[tuple[str, torch.Tensor]], dequantize_fp8: bool,
                       *, mtp: bool = False, may_be_absent: Callable[[str], bool] | None = None,
                       padded: LongcatConfig | None = None) -> Iterator[tuple[ParamTarget, torch.Tensor]]:
    """(parameter target, tensor) for every main-model checkpoint tensor, or with ``mtp`` every MTP tensor.

    Raises the checker's clear errors (unexpected / mis-shaped / missing tensor, except those
    ``may_be_absent`` excuses), skips the other part of the checkpoint (``model.mtp.*`` for the main
    model, the rest for the MTP draft), turns block-FP8 weight + weight_scale_inv pairs into bf16 weights
    when ``dequantize_fp8``, zero-pads weights up to the sizes of ``padded`` (the config the engine built
    its layers with, when it pads heads or intermediate sizes), and folds the MLA LoRA scale into the
    latent-norm weights (the MTP attention's too). MTP targets follow ``checkpoint.mtp_param_target``.
    """
    stream = CheckpointChecker(config, mtp=mtp, may_be_absent=may_be_absent)(weights)
    if dequantize_fp8:
        stream = Fp8CheckpointDequantizer(config.fp8_block_size(), torch.bfloat16)(stream)
    if padded is not None and padded != config:
        stream = zero_padded(stream, {name: shape for name, (shape, _) in checkpoint_shapes(padded).items()})
    target = mtp_param_target if mtp else param_target
    for name, tensor in stream:
        yield target(name), fold_lora_scale(name, tensor, config)


def zero_padded(weights: Iterable[tuple[str, torch.Tensor]], shapes: dict[str, tuple]
                ) -> Iterator[tuple[str, torch.Tensor]]:
    """Each tensor with zeros appended in every dimension where ``shapes[name]`` is larger.

    Padding sits at the end of the full tensor, so the engine's loaders split it over the ranks like any
    other tensor and the padded heads / units land, all zero, on the last ranks.
    """
    for name, tensor in weights:
        shape = shapes.get(name, tuple(tensor.shape))
        if shape != tuple(tensor.shape):
            out = tensor.new_zeros(shape)
            out[tuple(slice(0, n) for n in tensor.shape)] = tensor
            tensor = out
        yield name, tensor


FUSED_QKV_A = "fused_qkv_a_proj"


def check_fused_qkv_a_blocks(config: LongcatConfig) -> None:
    """Raises unless the q_a / kv_a FP8 scale rows can be stacked into one fused_qkv_a_proj scale.

    The fused weight [q_lora + kv_lora + rope, H] is scaled per 128-row block; q_a's scale rows fill
    those blocks only when q_lora_rank is a multiple of the block height (1536 on the real model).
    """
    block = config.fp8_block_size()
    if block and "self_attn" not in config.disable_quant_module and config.q_lora_rank % block[0]:
        raise ValueError(f"LongCat-Flash FP8: q_lora_rank {config.q_lora_rank} is not a multiple of the FP8 block "
                         f"height {block[0]}, so q_a_proj and kv_a_proj_with_mqa cannot share one fused_qkv_a_proj "
                         "weight_scale_inv")


def fuse_qkv_a(config: LongcatConfig, targets: Iterable[tuple[ParamTarget, torch.Tensor]]
               ) -> Iterator[tuple[ParamTarget, torch.Tensor]]:
    """Stacks the two ``fused_qkv_a_proj`` shards (q_a, kv_a) into one tensor along dim 0, weight and
    weight_scale_inv alike, for engines that hold it as one unmerged linear (SGLang, as its DeepSeek does).

    Every other target passes through; the fused one comes out without a shard id once both shards came.
    """
    pending: dict[str, dict[int, torch.Tensor]] = {}
    for target, tensor in targets:
        if target.param.rsplit(".", 2)[-2] != FUSED_QKV_A:
            yield target, tensor
            continue
        if target.param.endswith("weight_scale_inv"):
            check_fused_qkv_a_blocks(config)
        shards = pending.setdefault(target.param, {})
        shards[target.shard] = tensor
        if len(shards) == 2:
            del pending[target.param]
            yield ParamTarget(target.param), torch.cat([shards[0], shards[1]], dim=0)
