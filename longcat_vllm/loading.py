"""Checkpoint loading for the vLLM adapter: checks, FP8 handling and the name table from longcat_common."""

import logging
from collections.abc import Callable, Iterable
from functools import partial

import torch

from vllm.model_executor.model_loader.ep_weight_filter import should_skip_weight
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


def ep_filtered_weights(parallel_config, expert_map: torch.Tensor | None) -> Callable[[str], bool] | None:
    """The checkpoint names vLLM's loader drops before ``load_weights`` sees them under
    ``--enable-ep-weight-filter`` (default_loader.py: other EP ranks' expert weights; never with EPLB),
    as vLLM's own ``should_skip_weight`` over the experts this rank's expert map owns."""
    p = parallel_config
    if not (p.enable_expert_parallel and p.enable_ep_weight_filter and not p.enable_eplb) or expert_map is None:
        return None
    local = set((expert_map >= 0).nonzero().flatten().tolist())
    return partial(should_skip_weight, local_expert_ids=local)


def load_longcat_weights(model: torch.nn.Module, config: LongcatConfig, weights: Iterable[tuple[str, torch.Tensor]],
                         *, mtp: bool = False, may_be_absent: Callable[[str], bool] | None = None) -> set[str]:
    """Loads the main model's tensors, or with ``mtp`` the MTP draft's (longcat_common.checkpoint names);
    ``may_be_absent``: see ``ep_filtered_weights``."""
    params = dict(model.named_parameters())
    dequantize = config.fp8_block_size() is not None and not any(n.endswith("weight_scale_inv") for n in params)
    if dequantize:
        logger.warning("longcat-flash-plugins: no FP8 kernels on this device: dequantising the block-FP8 "
                       "checkpoint to bf16 at load")
    loaded: set[str] = set()
    for target, tensor in checkpoint_targets(config, weights, dequantize, mtp=mtp, may_be_absent=may_be_absent):
        pname = _param_name(target.param)
        if mtp and pname in SHARED_WITH_TARGET:
            continue  # checked, not loaded: vLLM's proposer gives an MTP draft the target's embedding
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
