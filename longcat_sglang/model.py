"""LongCat-Flash for SGLang: the engine's layers wired to common/'s layer flow, routing and loading.

Replaces SGLang's built-in ``LongcatFlashForCausalLM`` (registered by plugin.py). Parameter names follow
common/checkpoint.py, so one mapping table serves this adapter and the vLLM one.
"""

import dataclasses
import logging
from typing import Iterable

import torch
from torch import nn

from longcat_common import __version__
from longcat_common.checkpoint import ParamTarget
from longcat_common.config import LongcatConfig
from longcat_common.layer import ShortcutLayerSteps, shortcut_layer_forward
from longcat_common.loading import check_fused_qkv_a_blocks, checkpoint_targets, fuse_qkv_a
from longcat_common.ngram import FIELDS as NGRAM_FIELDS
from longcat_sglang.attention import LongcatMLA, check_attention_backends
from longcat_sglang.dp_gather import over_all_dp_ranks
from longcat_sglang.moe import LongcatMoE
from longcat_sglang.ngram import LongcatNgramEmbedding
from sglang.srt.eplb.expert_location import ModelConfigForExpertLocation
from sglang.srt.layers.activation import SiluAndMul
from sglang.srt.layers.dp_attention import is_dp_attention_enabled
from sglang.srt.layers.layernorm import RMSNorm
from sglang.srt.layers.linear import MergedColumnParallelLinear, RowParallelLinear
from sglang.srt.layers.logits_processor import LogitsProcessor
from sglang.srt.layers.vocab_parallel_embedding import ParallelLMHead, VocabParallelEmbedding
from sglang.srt.model_executor.forward_batch_info import ForwardBatch
from sglang.srt.model_loader.weight_utils import default_weight_loader
from sglang.srt.runtime_context import attention_backends, get_device, get_parallel
from sglang.srt.utils import add_prefix

logger = logging.getLogger(__name__)

# Logged once per model build and rank; tests look for it to prove this class (not the built-in) serves.
ACTIVE_MESSAGE = "LongcatFlashForCausalLM served by longcat_sglang"


# LongcatConfig field -> SGLang's config attribute. With --device cpu SGLang pads these where they do not
# split over the TP ranks (or, for a block-FP8 checkpoint, where they are not multiples of the block):
# configs/update_config.py, adjust_config_with_unaligned_cpu_tp, which keeps the checkpoint's value as original_*.
SGLANG_PADDED = {"num_attention_heads": "num_attention_heads", "ffn_hidden_size": "intermediate_size",
                 "expert_ffn_hidden_size": "moe_intermediate_size"}


def longcat_config(hf_config) -> LongcatConfig:
    """SGLang's LongcatFlashConfig -> the validated view of the checkpoint's own config (its sizes, before
    SGLang's padding; SGLang says num_hidden_layers for num_layers). The checkpoint is checked against it."""
    raw = hf_config.to_dict()
    raw.setdefault("num_layers", hf_config.num_hidden_layers)
    if raw.get("use_ngram_embedding"):  # SGLang's config object drops the ngram_* spelling's fields
        raw.update(ngram_fields(hf_config.name_or_path))
    for name, sglang_name in SGLANG_PADDED.items():
        if raw.get(f"original_{sglang_name}") is not None:
            raw[name] = raw[f"original_{sglang_name}"]
    return LongcatConfig.from_dict(raw)


def ngram_fields(model_path: str) -> dict:
    """The ``ngram_*`` spelling's fields of the checkpoint's config.json (SGLang's LongcatFlashConfig keeps
    only ``int(ratio * vocab_size)`` of them)."""
    from transformers import PretrainedConfig

    raw, _ = PretrainedConfig.get_config_dict(model_path)
    return {name: raw[name] for name in NGRAM_FIELDS["ngram"] if name in raw}


def layer_config(hf_config, checkpoint: LongcatConfig) -> LongcatConfig:
    """The sizes the layers are built with: SGLang's padded ones, as its built-in models use them.

    The checkpoint's tensors are zero-padded to them at load (loading.zero_padded; SGLang's own CPU loaders
    pad only with SGLANG_USE_CPU_ENGINE=1, and its ColumnParallelLinear not at all), so padding adds nothing
    to any output: a padded FFN unit has zero gate, up and down weights, a padded head zero q_b_proj and
    kv_b_proj rows (its absorbed output is 0) and zero o_proj columns.
    """
    return dataclasses.replace(checkpoint, **{name: getattr(hf_config, sglang_name)
                                              for name, sglang_name in SGLANG_PADDED.items()})


def padding_note(checkpoint: LongcatConfig, layers: LongcatConfig) -> str:
    padded = [f"{name} {getattr(checkpoint, name)}->{getattr(layers, name)}" for name in SGLANG_PADDED
              if getattr(checkpoint, name) != getattr(layers, name)]
    return f", padded by SGLang: {', '.join(padded)}" if padded else ""


def on_cuda_device() -> bool:
    return torch.device(get_device().device).type == "cuda"


def load_target(params: dict[str, nn.Parameter], target: ParamTarget, tensor: torch.Tensor) -> None:
    """One checkpoint tensor into its parameter through the parameter's own SGLang weight loader."""
    param = params[target.param]
    loader = getattr(param, "weight_loader", default_weight_loader)
    if target.expert is not None:
        loader(param, tensor, target.param, shard_id=target.shard, expert_id=target.expert)
    elif target.shard is not None:
        loader(param, tensor, target.shard)
    else:
        loader(param, tensor)


class LongcatDenseMLP(nn.Module):
    def __init__(self, config: LongcatConfig, quant_config, prefix: str):
        super().__init__()
        h, ffn = config.hidden_size, config.ffn_hidden_size
        self.gate_up_proj = MergedColumnParallelLinear(h, [ffn, ffn], bias=False, quant_config=quant_config,
                                                       prefix=add_prefix("gate_up_proj", prefix))
        self.down_proj = RowParallelLinear(ffn, h, bias=False, quant_config=quant_config, reduce_results=True,
                                           prefix=add_prefix("down_proj", prefix))
        self.act_fn = SiluAndMul()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate_up, _ = self.gate_up_proj(x)
        out, _ = self.down_proj(self.act_fn(gate_up))
        return out


def fused_add_norm(norm: RMSNorm):
    """SGLang's RMSNorm as common/layer.py's norm step: (h, residual or None) -> (normed, residual)."""
    return lambda h, residual: (norm(h), h) if residual is None else norm(h, residual)


def dp_local_embedding(config: LongcatConfig, prefix: str) -> VocabParallelEmbedding:
    """The token embedding, vocab-parallel over the ranks that share this rank's tokens: the attention-TP
    group under DP attention (the DP ranks embed different tokens), else the TP group."""
    return VocabParallelEmbedding(config.vocab_size, config.hidden_size, prefix=prefix,
                                  use_attn_tp_group=is_dp_attention_enabled())


class LongcatDecoderLayer(nn.Module):
    def __init__(self, config: LongcatConfig, layer_id: int, quant_config, on_cuda: bool, prefix: str):
        super().__init__()
        skip = set(config.disable_quant_module)
        attn_quant = None if "self_attn" in skip else quant_config
        mlp_quant = None if "mlps" in skip else quant_config
        eps = config.rms_norm_eps
        self.input_layernorm = nn.ModuleList(RMSNorm(config.hidden_size, eps=eps) for _ in range(2))
        self.post_attention_layernorm = nn.ModuleList(RMSNorm(config.hidden_size, eps=eps) for _ in range(2))
        self.self_attn = nn.ModuleList(
            LongcatMLA(config, 2 * layer_id + i, attn_quant, prefix=add_prefix(f"self_attn.{i}", prefix))
            for i in range(2))
        self.mlps = nn.ModuleList(
            LongcatDenseMLP(config, mlp_quant, prefix=add_prefix(f"mlps.{i}", prefix)) for i in range(2))
        self.mlp = LongcatMoE(config, layer_id, quant_config, on_cuda, prefix=add_prefix("mlp", prefix))
        self.dp_attention = is_dp_attention_enabled()

    def forward(self, positions, hidden, residual, forward_batch: ForwardBatch):
        def ffn(block):  # under DP attention the FFNs run on every DP rank's tokens (dp_gather.py)
            return over_all_dp_ranks(block, forward_batch) if self.dp_attention else block
        steps = ShortcutLayerSteps(
            input_norms=tuple(fused_add_norm(n) for n in self.input_layernorm),
            attentions=tuple(lambda h, a=a: a(positions, h, forward_batch) for a in self.self_attn),
            post_attention_norms=tuple(fused_add_norm(n) for n in self.post_attention_layernorm),
            dense_mlps=tuple(ffn(mlp) for mlp in self.mlps),
            moe=ffn(lambda m: self.mlp(m, forward_batch.global_num_tokens_gpu if self.dp_attention else None)),
        )
        return shortcut_layer_forward(steps, hidden, residual)


class LongcatFlashModel(nn.Module):
    def __init__(self, config: LongcatConfig, quant_config, on_cuda: bool, prefix: str):
        super().__init__()
        self.embed_tokens = dp_local_embedding(config, prefix=add_prefix("embed_tokens", prefix))
        self.ngram_embedding = LongcatNgramEmbedding(config, prefix=add_prefix("ngram_embedding", prefix)) \
            if config.ngram else None
        self.layers = nn.ModuleList(
            LongcatDecoderLayer(config, i, quant_config, on_cuda, prefix=add_prefix(f"layers.{i}", prefix))
            for i in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, input_ids, positions, forward_batch: ForwardBatch, input_embeds=None) -> torch.Tensor:
        hidden = self.embed_tokens(input_ids) if input_embeds is None else input_embeds
        if self.ngram_embedding is not None:
            hidden = self.ngram_embedding(input_ids, hidden, forward_batch)
        residual = None
        for layer in self.layers:
            hidden, residual = layer(positions, hidden, residual, forward_batch)
        hidden, _ = self.norm(hidden, residual)
        return hidden


class LongcatCausalLMBase(nn.Module):
    """What SGLang's target model and the MTP draft share: the supported parallel layouts, the config
    view, FP8 dequantisation off CUDA (no block-FP8 kernels there), an inner ``model`` with
    ``embed_tokens``, then the (vocab-parallel) LM head and SGLang's logits processor."""

    def __init__(self, config):
        super().__init__()
        if get_parallel().pp_size > 1:
            raise ValueError("longcat-flash-plugins: pipeline parallelism is not supported; use --tp / --ep-size "
                             "(and --attn-dp-size for DP attention)")
        self.config = config
        self.lc = longcat_config(config)
        self.on_cuda = on_cuda_device()
        self.dequantize_fp8 = self.lc.fp8_block_size() is not None and not self.on_cuda

    def build_head(self, config, quant_config, prefix: str) -> None:
        # SGLang's LogitsProcessor gathers the DP ranks' rows for a TP-wide head, or not (--enable-dp-lm-head)
        self.lm_head = ParallelLMHead(self.lc.vocab_size, self.lc.hidden_size, quant_config=quant_config,
                                      prefix=add_prefix("lm_head", prefix),
                                      use_attn_tp_group=get_parallel().enable_dp_lm_head)
        self.logits_processor = LogitsProcessor(config)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    @torch.no_grad()
    def forward(self, input_ids, positions, forward_batch: ForwardBatch, input_embeds=None):
        hidden = self.model(input_ids, positions, forward_batch, input_embeds)
        return self.logits_processor(input_ids, hidden, self.lm_head, forward_batch)

    def get_embed_and_head(self):
        return self.model.embed_tokens.weight, self.lm_head.weight


class LongcatFlashForCausalLM(LongcatCausalLMBase):
    def __init__(self, config, quant_config=None, prefix: str = ""):
        super().__init__(config)
        if self.dequantize_fp8:
            quant_config = None
        elif self.lc.fp8_block_size():
            check_fused_qkv_a_blocks(self.lc)
        check_attention_backends(*attention_backends())
        self.quant_config = quant_config
        self.layer_sizes = layers = layer_config(config, self.lc)
        self.model = LongcatFlashModel(layers, quant_config, self.on_cuda, prefix=add_prefix("model", prefix))
        self.build_head(config, quant_config, prefix)
        yarn = self.lc.rope_scaling
        logger.info("longcat-flash-plugins %s: %s (rope %s, device %s, tp %d, moe ep %d, attn dp %d, fp8 %s%s)",
                    __version__, ACTIVE_MESSAGE, f"yarn x{yarn['factor']:g}" if yarn else "plain", get_device().device,
                    get_parallel().tp_size, get_parallel().moe_ep_size, get_parallel().attn_dp_size,
                    "dequantised to bf16" if self.dequantize_fp8 else bool(self.lc.fp8_block_size()),
                    padding_note(self.lc, layers))

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]):
        params = dict(self.named_parameters())
        targets = checkpoint_targets(self.lc, weights, self.dequantize_fp8, padded=self.layer_sizes)
        for target, tensor in fuse_qkv_a(self.lc, targets):
            load_target(params, target, tensor)
        dtype = self.model.embed_tokens.weight.dtype
        for layer in self.model.layers:
            for attn in layer.self_attn:
                attn.absorb_kv_b(dtype)

    @classmethod
    def get_model_config_for_expert_location(cls, config):
        return ModelConfigForExpertLocation(num_layers=config.num_hidden_layers,
                                            num_logical_experts=config.n_routed_experts)


EntryClass = [LongcatFlashForCausalLM]
