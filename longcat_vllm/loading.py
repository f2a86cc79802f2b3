"""Checkpoint loading for the vLLM adapter: checks, FP8 handling and the name table from longcat_common."""

import logging
from collections.abc import Iterable

import torch

from vllm.model_executor.model_loader.weight_utils import default_weight_loader
from vllm.platforms import current_platform

from longcat_common.config import LongcatConfig
from longcat_common.loading import checkpoint_targets

SHARED_WITH_TARGET = ("model.embed_tokens.weight",)
logger = logging.getLogger("vllm.longcat_flash_plugins")  # under "vllm" to use its log handler


def quant_config_for_device(vllm_config, config: LongcatConfig):
    """vLLM's block-FP8 quant config on CUDA / ROCm (vLLM picks the FP8 kernels, Marlin W8A16 on GPUs
    without FP8 math); None, i.e. bf16 weights dequantised at load, elsewhere."""
    block = config.fp8_block_size()  # raises for a quantisation scheme we do not support
    if block is None or not current_platform.is_cuda_alike():
        return None
    return vllm_config.quant_config


def _param_name(target_param: str) -> str:
    """vLLM's FusedMoE keeps expert weights in its RoutedExperts submodule."""
    return target_param.replace(".mlp.experts.w", ".mlp.experts.routed_experts.w")


def load_longcat_weights(model: torch.nn.Module, config: LongcatConfig,
                         weights: Iterable[tuple[str, torch.Tensor]], mtp: bool = False) -> set[str]:
    """Loads the main model's tensors, or with ``mtp`` the MTP draft's (longcat_common.checkpoint names)."""
    params = dict(model.named_parameters())
    dequantize = config.fp8_block_size() is not None and not any(n.endswith("weight_scale_inv") for n in params)
    if dequantize:
        logger.warning("longcat-flash-plugins: no FP8 kernels on this device: dequantising the block-FP8 "
                       "checkpoint to bf16 at load")
    loaded: set[str] = set()
    for target, tensor in checkpoint_targets(config, weights, dequantize, mtp):
        pname = _param_name(target.param)
        if mtp and pname not in params and pname in SHARED_WITH_TARGET:
            continue  # checked above; vLLM's proposer gives the draft the target's module
        param = params[pname]
        if target.expert is not None:
            param.weight_loader(param, tensor, pname, shard_id=target.shard, expert_id=target.expert,
                                return_success=True)
        elif target.shard is not None:
            param.weight_loader(param, tensor, target.shard)
        else:
            getattr(param, "weight_loader", default_weight_loader)(param, tensor)
        loaded.add(pname)
    return loaded
