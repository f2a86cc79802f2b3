"""LongCat-Flash's MTP draft layer for SGLang's NEXTN (EAGLE) speculative decoding.

Replaces SGLang's built-in ``LongcatFlashForCausalLMNextN`` (registered by plugin.py): SGLang's model
config renames the draft's architecture to this name when ``--speculative-algorithm NEXTN`` points the
draft at a LongCat-Flash checkpoint. The layer flow is ``longcat_common.mtp``; the attention is
longcat_sglang's MLA (portable rope off CUDA), the MLP the dense one of the main model.

What SGLang's EAGLE worker expects of a NEXTN draft (``speculative/eagle_worker_v2.py``):
  * the target's hidden states arrive as ``forward_batch.spec_info.hidden_states``: the ones the target
    gave its LogitsProcessor, i.e. after its final norm (common/mtp.py);
  * the draft runs in its own model runner with its own KV pool of ``num_nextn_predict_layers`` (1)
    attention layers (SGLang's model config sets the draft's ``num_hidden_layers`` to it), so the MTP
    attention is KV-cache layer 0;
  * ``set_embed_and_head`` receives the target's embedding and lm_head weights, which replace the
    draft's own (so ``model.mtp.embed_tokens`` is not loaded, as in the built-in).
"""

import logging
from typing import Iterable

import torch
from torch import nn

from longcat_common import __version__
from longcat_common.loading import checkpoint_targets, fuse_qkv_a
from longcat_common.mtp import MtpLayerSteps, mtp_layer_forward, require_mtp_layer
from longcat_sglang.attention import LongcatMLA
from longcat_sglang.model import (LongcatCausalLMBase, LongcatDenseMLP, fused_add_norm, layer_config, load_target,
                                  padding_note)
from sglang.srt.layers.dp_attention import is_dp_attention_enabled
from sglang.srt.layers.layernorm import RMSNorm
from sglang.srt.layers.linear import ReplicatedLinear
from sglang.srt.layers.vocab_parallel_embedding import VocabParallelEmbedding
from sglang.srt.model_executor.forward_batch_info import ForwardBatch
from sglang.srt.runtime_context import get_device, get_parallel
from sglang.srt.utils import add_prefix

logger = logging.getLogger(__name__)

ARCHITECTURE = "LongcatFlashForCausalLMNextN"
ACTIVE_MESSAGE = f"{ARCHITECTURE} served by longcat_sglang"
SHARED_WITH_TARGET = ("model.embed_tokens.weight",)  # replaced by set_embed_and_head


class LongcatMtpLayer(nn.Module):
    """The one MTP layer; parameter names follow longcat_common.checkpoint.mtp_param_target."""

    def __init__(self, config, quant_config, prefix: str):
        super().__init__()
        h, eps = config.hidden_size, config.rms_norm_eps
        self.enorm = RMSNorm(h, eps=eps)
        self.hnorm = RMSNorm(h, eps=eps)
        self.eh_proj = ReplicatedLinear(2 * h, h, bias=False, quant_config=quant_config,
                                        prefix=add_prefix("eh_proj", prefix))
        self.input_layernorm = RMSNorm(h, eps=eps)
        self.self_attn = LongcatMLA(config, 0, quant_config, prefix=add_prefix("self_attn", prefix))
        self.post_attention_layernorm = RMSNorm(h, eps=eps)
        self.mlp = LongcatDenseMLP(config, quant_config, prefix=add_prefix("mlp", prefix))

    def steps(self, positions, forward_batch: ForwardBatch, final_norm: RMSNorm) -> MtpLayerSteps:
        return MtpLayerSteps(
            embed_norm=self.enorm,
            hidden_norm=self.hnorm,
            eh_proj=lambda x: self.eh_proj(x)[0],
            input_norm=fused_add_norm(self.input_layernorm),
            attention=lambda h: self.self_attn(positions, h, forward_batch),
            post_attention_norm=fused_add_norm(self.post_attention_layernorm),
            mlp=self.mlp,
            final_norm=fused_add_norm(final_norm),
        )


class LongcatMtpModel(nn.Module):
    def __init__(self, config, quant_config, prefix: str):
        super().__init__()
        self.embed_tokens = VocabParallelEmbedding(config.vocab_size, config.hidden_size,
                                                   prefix=add_prefix("embed_tokens", prefix))
        self.layers = nn.ModuleList([LongcatMtpLayer(config, quant_config,
                                                     prefix=add_prefix("layers.0", prefix))])
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, input_ids, positions, forward_batch: ForwardBatch, input_embeds=None) -> torch.Tensor:
        """input_ids [T] (tokens t+1); the target's hidden states h_t come in ``forward_batch.spec_info``."""
        embeds = self.embed_tokens(input_ids) if input_embeds is None else input_embeds
        if embeds.shape[0] == 0:  # idle batch (another DP rank has work)
            return embeds
        steps = self.layers[0].steps(positions, forward_batch, self.norm)
        return mtp_layer_forward(steps, embeds, forward_batch.spec_info.hidden_states)


class LongcatFlashForCausalLMNextN(LongcatCausalLMBase):
    def __init__(self, config, quant_config=None, prefix: str = ""):
        super().__init__(config)
        if is_dp_attention_enabled():
            raise ValueError("longcat-flash-plugins: the NEXTN draft does not support DP attention "
                             "(--attn-dp-size / --enable-dp-attention); use speculative decoding with --tp only")
        require_mtp_layer(self.lc)
        if self.dequantize_fp8 or "mtp" in self.lc.disable_quant_module:
            quant_config = None
        self.quant_config = quant_config
        self.layer_sizes = layers = layer_config(config, self.lc)
        self.model = LongcatMtpModel(layers, quant_config, prefix=add_prefix("model", prefix))
        self.build_head(config, quant_config, prefix)
        logger.info("longcat-flash-plugins %s: %s (device %s, tp %d, fp8 %s%s)", __version__, ACTIVE_MESSAGE,
                    get_device().device, get_parallel().tp_size,
                    "dequantised to bf16" if self.dequantize_fp8 else bool(self.lc.fp8_block_size()),
                    padding_note(self.lc, layers))

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]):
        params = dict(self.named_parameters())
        targets = checkpoint_targets(self.lc, weights, self.dequantize_fp8, mtp=True, padded=self.layer_sizes)
        for target, tensor in fuse_qkv_a(self.lc, targets):
            if target.param not in SHARED_WITH_TARGET:
                load_target(params, target, tensor)
        self.model.layers[0].self_attn.absorb_kv_b(self.lm_head.weight.dtype)

    def set_embed_and_head(self, embed: torch.Tensor, head: torch.Tensor) -> None:
        """The target's embedding and lm_head (same TP shards) in place of the draft's own."""
        del self.model.embed_tokens.weight
        del self.lm_head.weight
        self.model.embed_tokens.weight = embed
        self.lm_head.weight = head


EntryClass = [LongcatFlashForCausalLMNextN]
