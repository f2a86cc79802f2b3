"""LongcatFlashForCausalLM for vLLM: vLLM's parallel layers wired to longcat_common's layer logic."""

import logging
import math
from collections.abc import Iterable

import torch
from torch import nn

from vllm.compilation.decorators import support_torch_compile
from vllm.config import VllmConfig
from vllm.model_executor.layers.layernorm import RMSNorm
from vllm.model_executor.layers.logits_processor import LogitsProcessor
from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead, VocabParallelEmbedding
from vllm.model_executor.models.deepseek_v2 import DeepseekV2MLAAttention, DeepseekV2MLP
from vllm.model_executor.models.utils import make_layers, maybe_prefix
from vllm.platforms import current_platform
from vllm.sequence import IntermediateTensors

from longcat_common import __version__
from longcat_common.config import LongcatConfig
from longcat_common.layer import ShortcutLayerSteps, shortcut_layer_forward

from .cpu_collectives import supply_uneven_collectives
from .loading import ep_filtered_weights, load_longcat_weights, quant_config_for_device
from .moe import LongcatMoE
from .ngram import NgramEmbedding
from .rope import MlaRope

logger = logging.getLogger("vllm.longcat_flash_plugins")  # under "vllm" to use its log handler


def fused_norm(norm: RMSNorm):
    """vLLM's add-RMSNorm as a longcat_common norm step: (h, residual or None) -> (normed, residual)."""
    def step(h, residual):
        return (norm(h), h) if residual is None else norm(h, residual)
    return step


def mla_attention(vllm_config: VllmConfig, config: LongcatConfig, quant_config, prefix: str) -> nn.Module:
    """vLLM's MLA attention with LongCat's sizes and our MlaRope (right on every device)."""
    attn = DeepseekV2MLAAttention(
        vllm_config=vllm_config, config=vllm_config.model_config.hf_config, hidden_size=config.hidden_size,
        num_heads=config.num_attention_heads, qk_nope_head_dim=config.qk_nope_head_dim,
        qk_rope_head_dim=config.qk_rope_head_dim, v_head_dim=config.v_head_dim,
        q_lora_rank=config.q_lora_rank, kv_lora_rank=config.kv_lora_rank,
        max_position_embeddings=config.max_position_embeddings, cache_config=vllm_config.cache_config,
        quant_config=quant_config, prefix=prefix)
    attn.rotary_emb = attn.mla_attn.rotary_emb = MlaRope(
        config.qk_rope_head_dim, config.max_position_embeddings, config.rope_theta,
        config.rope_scaling)
    if not math.isclose(attn.scaling, config.softmax_scale(), rel_tol=1e-9):  # vLLM applies YaRN's mscale
        raise ValueError(f"LongCat-Flash: vLLM's MLA softmax scale {attn.scaling} != {config.softmax_scale()}")
    return attn


class LongcatDecoderLayer(nn.Module):
    def __init__(self, vllm_config: VllmConfig, config: LongcatConfig, quant_config, prefix: str):
        super().__init__()
        h = config.hidden_size
        attn_quant = None if "self_attn" in config.disable_quant_module else quant_config
        mlp_quant = None if "mlps" in config.disable_quant_module else quant_config
        self.self_attn = nn.ModuleList(mla_attention(vllm_config, config, attn_quant, f"{prefix}.self_attn.{i}")
                                       for i in range(2))
        self.input_layernorm = nn.ModuleList(RMSNorm(h, eps=config.rms_norm_eps) for _ in range(2))
        self.post_attention_layernorm = nn.ModuleList(RMSNorm(h, eps=config.rms_norm_eps) for _ in range(2))
        self.mlps = nn.ModuleList(
            DeepseekV2MLP(h, config.ffn_hidden_size, "silu", quant_config=mlp_quant, prefix=f"{prefix}.mlps.{i}")
            for i in range(2))
        self.mlp = LongcatMoE(config, quant_config, prefix=f"{prefix}.mlp")

    def forward(self, positions, hidden_states, residual):
        steps = ShortcutLayerSteps(
            input_norms=tuple(fused_norm(n) for n in self.input_layernorm),
            attentions=tuple(lambda h, a=a: a(positions=positions, hidden_states=h, llama_4_scaling=None)
                             for a in self.self_attn),
            post_attention_norms=tuple(fused_norm(n) for n in self.post_attention_layernorm),
            dense_mlps=tuple(self.mlps),
            moe=self.mlp,
        )
        return shortcut_layer_forward(steps, hidden_states, residual)


@support_torch_compile
class LongcatFlashModel(nn.Module):
    def __init__(self, *, vllm_config: VllmConfig, prefix: str = ""):
        super().__init__()
        config = LongcatConfig.from_hf(vllm_config.model_config.hf_config)
        quant_config = quant_config_for_device(vllm_config, config)
        self.embed_tokens = VocabParallelEmbedding(config.vocab_size, config.hidden_size,
                                                   prefix=maybe_prefix(prefix, "embed_tokens"))
        if config.ngram:  # Flash-Lite: run by LongcatFlashForCausalLM.forward, outside the compiled forward
            self.ngram_embedding = NgramEmbedding(config.ngram, self.embed_tokens, config.hidden_size,
                                                  vllm_config.cache_config, prefix=maybe_prefix(prefix, "ngram_embedding"))
        self.start_layer, self.end_layer, self.layers = make_layers(
            config.num_layers, lambda prefix: LongcatDecoderLayer(vllm_config, config, quant_config, prefix),
            prefix=f"{prefix}.layers")
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def embed_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed_tokens(input_ids)

    def forward(self, input_ids: torch.Tensor | None, positions: torch.Tensor,
                intermediate_tensors: IntermediateTensors | None = None,
                inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        hidden = inputs_embeds if inputs_embeds is not None else self.embed_tokens(input_ids)
        residual = None
        for layer in self.layers[self.start_layer:self.end_layer]:
            hidden, residual = layer(positions, hidden, residual)
        hidden, _ = self.norm(hidden, residual)
        return hidden


class LongcatFlashForCausalLM(nn.Module):
    """Served in place of vLLM's built-in class of the same name, and for Thinking-2601's
    ``LongcatCausalLM`` (see longcat_vllm.plugin)."""

    is_longcat_flash_plugin = True

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = ""):
        super().__init__()
        self.config = LongcatConfig.from_hf(vllm_config.model_config.hf_config)
        if vllm_config.parallel_config.pipeline_parallel_size > 1:
            raise ValueError("longcat-flash-plugins: pipeline parallelism is not supported; use TP/EP")
        if current_platform.is_cpu() and vllm_config.parallel_config.data_parallel_size > 1:
            supply_uneven_collectives()  # the MoE's DP all-gather on vLLM's CPU communicator (cpu_collectives.py)
        self.model = LongcatFlashModel(vllm_config=vllm_config, prefix=maybe_prefix(prefix, "model"))
        self.lm_head = ParallelLMHead(self.config.vocab_size, self.config.hidden_size,
                                      prefix=maybe_prefix(prefix, "lm_head"))
        self.logits_processor = LogitsProcessor(self.config.vocab_size)
        first_moe = self.model.layers[self.model.start_layer].mlp
        self.ep_filtered = ep_filtered_weights(vllm_config.parallel_config, first_moe.experts.routed_experts.expert_map)
        arch = (vllm_config.model_config.architectures or ["LongcatFlashForCausalLM"])[0]
        logger.warning("longcat-flash-plugins %s: %s served by longcat_vllm "
                       "(zero experts: masked slots, identity added after reduction)", __version__, arch)

    def embed_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.embed_input_ids(input_ids)

    def forward(self, input_ids, positions, intermediate_tensors=None, inputs_embeds=None):
        if self.config.ngram and inputs_embeds is None:  # Flash-Lite: the n-gram embedding, eager (data-dependent)
            inputs_embeds, input_ids = self.model.ngram_embedding(input_ids, positions), None
        return self.model(input_ids, positions, intermediate_tensors, inputs_embeds)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.logits_processor(self.lm_head, hidden_states)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        return load_longcat_weights(self, self.config, weights, may_be_absent=self.ep_filtered)
