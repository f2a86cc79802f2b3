"""LongCatFlashMTPModel for vLLM: the MTP draft layer of longcat_common.mtp on vLLM's layers.

Served in place of vLLM's built-in ``LongCatFlashMTP`` (registered from longcat_vllm.plugin) for
``--speculative-config '{"method": "mtp"}'`` (or the deprecated ``"longcat_flash_mtp"``). Differences
from the built-in: the MTP attention uses our MlaRope (vLLM's CPU rotary kernel is wrong on MLA's
strided views, docs/vllm-cpu-rope.md), the checkpoint goes through longcat_common's checked MTP stream
(FP8 dequantised where vLLM has no FP8 kernels, MLA LoRA scale folded), and the draft owns no
embedding or lm_head: vLLM's proposer always hands an MTP draft the target's (llm_base_proposer
``_maybe_share_embeddings`` / ``_maybe_share_lm_head``), so there is no lm_head left for vLLM's loader
to report as uninitialised (LongCat-Flash-Chat#32).
"""

import logging
from collections.abc import Iterable

import torch
from torch import nn

from vllm.config import VllmConfig
from vllm.model_executor.layers.layernorm import RMSNorm
from vllm.model_executor.layers.linear import ReplicatedLinear
from vllm.model_executor.layers.logits_processor import LogitsProcessor
from vllm.model_executor.models.deepseek_v2 import DeepseekV2MLP
from vllm.model_executor.models.utils import maybe_prefix

from longcat_common import __version__
from longcat_common.config import LongcatConfig
from longcat_common.mtp import MtpLayerSteps, mtp_attention_layer_index, mtp_layer_forward, require_mtp_layer

from longcat_vllm.startup_check import reference_mla_on_cpu
from .loading import load_longcat_weights, quant_config_for_device
from .model import fused_norm, mla_attention

logger = logging.getLogger("vllm.longcat_flash_plugins")  # under "vllm" to use its log handler


class LongcatMtpLayer(nn.Module):
    """Parameters model.layers.0.* (checkpoint model.mtp.layers.0.*, longcat_common.checkpoint)."""

    def __init__(self, vllm_config: VllmConfig, config: LongcatConfig, quant_config, prefix: str):
        super().__init__()
        h, eps = config.hidden_size, config.rms_norm_eps
        self.enorm = RMSNorm(h, eps=eps)
        self.hnorm = RMSNorm(h, eps=eps)
        self.eh_proj = ReplicatedLinear(2 * h, h, bias=False, quant_config=quant_config, prefix=f"{prefix}.eh_proj")
        self.input_layernorm = RMSNorm(h, eps=eps)
        self.self_attn = mla_attention(vllm_config, config, quant_config, f"{prefix}.self_attn")
        self.post_attention_layernorm = RMSNorm(h, eps=eps)
        self.mlp = DeepseekV2MLP(h, config.ffn_hidden_size, "silu", quant_config=quant_config, prefix=f"{prefix}.mlp")

    def steps(self, positions: torch.Tensor, final_norm: RMSNorm) -> MtpLayerSteps:
        return MtpLayerSteps(
            embed_norm=self.enorm, hidden_norm=self.hnorm, eh_proj=lambda x: self.eh_proj(x)[0],
            input_norm=fused_norm(self.input_layernorm),
            attention=lambda h: self.self_attn(positions=positions, hidden_states=h, llama_4_scaling=None),
            post_attention_norm=fused_norm(self.post_attention_layernorm), mlp=self.mlp,
            final_norm=fused_norm(final_norm))


class LongcatMtpModel(nn.Module):
    """``layers.0`` and the final ``norm`` (checkpoint model.mtp.norm); ``embed_tokens`` is the target's."""

    def __init__(self, vllm_config: VllmConfig, config: LongcatConfig, quant_config, prefix: str):
        super().__init__()
        # the attention's name carries layer index 2 * num_layers: after the target's in the shared KV cache
        self.layers = nn.ModuleList([LongcatMtpLayer(vllm_config, config, quant_config,
                                                     f"{prefix}.layers.{mtp_attention_layer_index(config)}")])
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)


class LongcatFlashMTP(nn.Module):
    """Served in place of vLLM's built-in LongCatFlashMTP (see longcat_vllm.plugin)."""

    is_longcat_flash_plugin = True

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = ""):
        super().__init__()
        self.config = LongcatConfig.from_hf(vllm_config.model_config.hf_config)
        reference_mla_on_cpu(vllm_config)  # vLLM gives the draft a config of its own, without the target's choice
        require_mtp_layer(self.config)
        quant_config = (None if "mtp" in self.config.disable_quant_module
                        else quant_config_for_device(vllm_config, self.config))
        self.model = LongcatMtpModel(vllm_config, self.config, quant_config, maybe_prefix(prefix, "model"))
        self.logits_processor = LogitsProcessor(self.config.vocab_size)
        logger.warning("longcat-flash-plugins %s: LongCatFlashMTPModel served by longcat_vllm", __version__)

    def embed_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.embed_tokens(input_ids)

    def forward(self, input_ids: torch.Tensor | None, positions: torch.Tensor, hidden_states: torch.Tensor,
                intermediate_tensors=None, inputs_embeds: torch.Tensor | None = None,
                spec_step_idx: int = 0) -> torch.Tensor:
        """input_ids [T] (tokens t+1), positions [T], hidden_states [T, H] (target's post-norm h_t, or the
        previous draft step's output) -> draft hidden states [T, H], final-normed."""
        embeds = inputs_embeds if inputs_embeds is not None else self.embed_input_ids(input_ids)
        steps = self.model.layers[0].steps(positions, self.model.norm)
        return mtp_layer_forward(steps, embeds, hidden_states)

    def compute_logits(self, hidden_states: torch.Tensor, spec_step_idx: int = 0) -> torch.Tensor:
        return self.logits_processor(self.lm_head, hidden_states)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        return load_longcat_weights(self, self.config, weights, mtp=True)
