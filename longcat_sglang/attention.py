"""LongCat-Flash MLA on SGLang's layers: the absorbed (latent) form, and the MHA form for fresh prefills.

One attention sublayer (there are two per decoder layer, KV-cache layer ids 2l and 2l+1):

    [c_q | c_kv | k_pe] = fused_qkv_a_proj(x)          # [T, q_lora + kv_lora + rope], one unmerged linear
    q   = q_b_proj(q_a_layernorm(c_q))                  # [T, h, nope + rope]   (h = local heads)
    c   = kv_a_layernorm(c_kv)                          # [T, kv_lora]           (cached latent, with k_pe)
  absorbed:
    q_lat = q_nope @ W_kc                               # [T, h, kv_lora]
    o_lat = attention(q = [q_lat | rope(q_pe)], k = [c | rope(k_pe)], v = c)   # [T, h, kv_lora]
    o = o_lat @ W_vc                                    # [T, h, v]
  MHA (prefill without a cached prefix, where SGLang's DeepSeek rule picks it):
    [k_nope | v] = kv_b_proj(c)                         # [T, h, nope], [T, h, v]
    o = causal attention(q = [q_nope | rope(q_pe)], k = [k_nope | rope(k_pe)], v)  # the latent is cached first
  out = o_proj(o)                                       # [T, H], all-reduced over attention TP

``fused_qkv_a_proj`` is one ReplicatedLinear, as in SGLang's DeepSeek: block-FP8 requires every part of
a merged linear to be a multiple of 128, and kv_lora + rope = 576 is not. The MLA LoRA scales are folded
into the two norm weights at load (common/mla.py), so the cached latent is the scaled one.

Which form runs is SGLang's own DeepSeek rule (``AttentionBackendRegistry``), with chunked-prefix-cache
MHA off: MHA only for extends without a cached prefix. The FlashInfer MLA backend (and flashmla, which
prefills through it) plans its "ragged" MHA kernel for exactly those batches, and trtllm_mla its own.
``torch_native`` (CPU) reads K/V back from the latent pool, so there the absorbed form always runs.
"""


import torch
from torch import nn

from longcat_common.config import LongcatConfig
from longcat_common.fp8 import FP8_DTYPE, dequantize_block_fp8
from longcat_common.rope import apply_rope_interleaved, shared_cos_sin_cache
from sglang.srt.layers.layernorm import RMSNorm
from sglang.srt.environ import envs
from sglang.srt.layers.linear import ColumnParallelLinear, ReplicatedLinear, RowParallelLinear
from sglang.srt.layers.radix_attention import RadixAttention
from sglang.srt.mem_cache.memory_pool import KVWriteLoc
from sglang.srt.model_executor.forward_batch_info import ForwardBatch
from sglang.srt.model_executor.forward_context import get_attn_backend, get_token_to_kv_pool
from sglang.srt.models.deepseek_common.attention_backend_handler import AttentionBackendRegistry
from sglang.srt.models.deepseek_common.attention_forward_methods.forward_methods import AttnForwardMethod
from sglang.srt.models.deepseek_common.utils import FORWARD_ABSORB_CORE_ATTENTION_BACKENDS
from sglang.srt.runtime_context import attention_backends, get_exec, get_parallel, get_schedule
from sglang.srt.utils import add_prefix


class PortableRope(nn.Module):
    """Interleaved RoPE (YaRN included) from common/rope.py with one cos/sin cache shared by every layer.

    Used on every device: SGLang's rotary embedding calls ``vllm._custom_ops`` off CUDA (absent there),
    and its CPU factory asserts a ``deepseek_yarn`` scaling that Flash-Chat does not have; one rotation
    everywhere is the one the CPU tests check against transformers (YaRN past the original context).
    """

    def __init__(self, rotary_dim: int, max_position: int, theta: float, yarn: dict | None = None):
        super().__init__()
        self.cos_sin_cache = shared_cos_sin_cache(rotary_dim, max_position, theta, yarn)

    def forward(self, positions: torch.Tensor, q_pe: torch.Tensor, k_pe: torch.Tensor):
        return (apply_rope_interleaved(positions, q_pe, self.cos_sin_cache),
                apply_rope_interleaved(positions, k_pe, self.cos_sin_cache))


# Backends whose prefill we feed in both forms (by SGLang's DeepSeek rule); CPU's runs the absorbed form only.
MHA_PREFILL_BACKENDS = ("flashinfer", "flashmla", "fa3", "triton", "trtllm_mla")
ABSORBED_ONLY_BACKENDS = ("torch_native",)
MHA_METHODS = (AttnForwardMethod.MHA, AttnForwardMethod.MHA_ONE_SHOT, AttnForwardMethod.MHA_CHUNKED_KV)


def check_attention_backends(prefill: str | None, decode: str | None) -> None:
    """Start-up check of the configured backends: only those whose required shapes we send."""
    supported = MHA_PREFILL_BACKENDS + ABSORBED_ONLY_BACKENDS
    for role, name in (("prefill", prefill), ("decode", decode)):
        if name not in supported:
            raise ValueError(f"longcat-flash-plugins: attention backend {name!r} ({role}) is not supported for "
                             f"LongCat-Flash; use one of {', '.join(supported)} (--attention-backend)")
    if "trtllm_mla" in (prefill, decode) and not get_schedule().disable_chunked_prefix_cache:
        # trtllm_mla expects chunked-prefix MHA for every extend with a cached prefix; we send the absorbed form.
        raise ValueError("longcat-flash-plugins: --attention-backend trtllm_mla needs --disable-chunked-prefix-cache "
                         "(LongCat-Flash attends a cached prefix in the absorbed MLA form)")


def _backend_name(forward_batch: ForwardBatch) -> str:
    """The attention backend serving this batch (prefill and decode may differ)."""
    backend = get_attn_backend()
    prefill, decode = attention_backends()
    if forward_batch.forward_mode.is_decode_or_idle():
        return getattr(backend, "decode_attention_backend_str", None) or decode
    return getattr(backend, "prefill_attention_backend_str", None) or prefill


class LongcatMLA(nn.Module):
    def __init__(self, config: LongcatConfig, attn_layer_id: int, quant_config, prefix: str):
        super().__init__()
        attn_tp = get_parallel().attn_tp_size
        if config.num_attention_heads % attn_tp:
            raise ValueError(f"LongCat-Flash: {config.num_attention_heads} attention heads do not split "
                             f"over attention TP size {attn_tp}")
        self.num_local_heads = config.num_attention_heads // attn_tp
        self.nope, self.rope_dim, self.v_dim = config.qk_nope_head_dim, config.qk_rope_head_dim, config.v_head_dim
        self.q_lora, self.kv_lora = config.q_lora_rank, config.kv_lora_rank
        heads, h = config.num_attention_heads, config.hidden_size

        self.fused_qkv_a_proj = ReplicatedLinear(
            h, self.q_lora + self.kv_lora + self.rope_dim, bias=False, quant_config=quant_config,
            prefix=add_prefix("fused_qkv_a_proj", prefix))
        self.q_a_layernorm = RMSNorm(self.q_lora, eps=config.rms_norm_eps)
        self.q_b_proj = ColumnParallelLinear(
            self.q_lora, heads * config.qk_head_dim, bias=False, quant_config=quant_config,
            prefix=add_prefix("q_b_proj", prefix), parallel_group="attn_tp")
        self.kv_a_layernorm = RMSNorm(self.kv_lora, eps=config.rms_norm_eps)
        self.kv_b_proj = ColumnParallelLinear(
            self.kv_lora, heads * (self.nope + self.v_dim), bias=False, quant_config=quant_config,
            prefix=add_prefix("kv_b_proj", prefix), parallel_group="attn_tp")
        self.o_proj = RowParallelLinear(
            heads * self.v_dim, h, bias=False, quant_config=quant_config, reduce_results=True,
            prefix=add_prefix("o_proj", prefix), parallel_group="attn_tp")
        self.rotary_emb = PortableRope(config.qk_rope_head_dim, config.max_position_embeddings, config.rope_theta,
                                       config.rope_scaling)
        # One latent "KV head" of width kv_lora + rope; the value is its first kv_lora columns.
        self.attn_mqa = RadixAttention(
            self.num_local_heads, self.kv_lora + self.rope_dim, config.softmax_scale(), num_kv_heads=1,
            layer_id=attn_layer_id, v_head_dim=self.kv_lora, quant_config=quant_config,
            prefix=add_prefix("attn_mqa", prefix))
        self.attn_mha = RadixAttention(
            self.num_local_heads, config.qk_head_dim, config.softmax_scale(),
            num_kv_heads=self.num_local_heads, layer_id=attn_layer_id, v_head_dim=self.v_dim,
            quant_config=quant_config, prefix=add_prefix("attn_mha", prefix))
        # What SGLang's DeepSeek attention-method handlers read off the module. Chunked-prefix MHA is not
        # implemented here: a cached prefix is always attended in the absorbed form.
        self.qk_rope_head_dim = self.rope_dim
        self.flashinfer_mla_disable_ragged = get_exec().kernel.flashinfer_mla_disable_ragged
        self.disable_chunked_prefix_cache = True
        self.chunked_prefix_cache_threshold = envs.SGLANG_CHUNKED_PREFIX_CACHE_THRESHOLD.get()
        self.w_kc: torch.Tensor | None = None  # [h, nope, kv_lora]
        self.w_vc: torch.Tensor | None = None  # [h, kv_lora, v]

    def absorb_kv_b(self, dtype: torch.dtype) -> None:
        """Splits kv_b_proj into the absorbed-MLA matrices; call once after loading (FP8 is dequantised)."""
        w = self.kv_b_proj.weight
        if w.dtype == FP8_DTYPE:
            w = dequantize_block_fp8(w, self.kv_b_proj.weight_scale_inv, dtype=dtype)
        w = w.view(self.num_local_heads, self.nope + self.v_dim, self.kv_lora)
        self.w_kc = w[:, : self.nope].contiguous()
        self.w_vc = w[:, self.nope:].transpose(1, 2).contiguous()

    def forward(self, positions: torch.Tensor, x: torch.Tensor, forward_batch: ForwardBatch) -> torch.Tensor:
        latent, _ = self.fused_qkv_a_proj(x)
        c_q, c_kv, k_pe = latent.split([self.q_lora, self.kv_lora, self.rope_dim], dim=-1)
        q, _ = self.q_b_proj(self.q_a_layernorm(c_q.contiguous()))
        q_nope, q_pe = q.view(-1, self.num_local_heads, self.nope + self.rope_dim).split(
            [self.nope, self.rope_dim], dim=-1)
        c = self.kv_a_layernorm(c_kv.contiguous()).unsqueeze(1)  # [T, 1, kv_lora]
        q_pe, k_pe = self.rotary_emb(positions, q_pe, k_pe.unsqueeze(1))
        if self.uses_mha(forward_batch):
            o = self._forward_mha(q_nope, q_pe, c, k_pe, forward_batch)
        else:
            o = self._forward_absorbed(q_nope, q_pe, c, k_pe, forward_batch)
        out, _ = self.o_proj(o.reshape(-1, self.num_local_heads * self.v_dim))
        return out

    def uses_mha(self, forward_batch: ForwardBatch) -> bool:
        """SGLang's DeepSeek rule for this batch, on the backends where we feed both forms."""
        backend = _backend_name(forward_batch)
        if backend not in MHA_PREFILL_BACKENDS:
            return False
        return AttentionBackendRegistry.get_handler(backend)(self, forward_batch) in MHA_METHODS

    def _forward_mha(self, q_nope, q_pe, c, k_pe, forward_batch: ForwardBatch) -> torch.Tensor:
        """q_nope [T, h, nope], q_pe [T, h, rope], c [T, 1, kv_lora], k_pe [T, 1, rope] -> o [T, h, v]."""
        get_token_to_kv_pool().set_mla_kv_buffer(self.attn_mqa, KVWriteLoc.for_batch(forward_batch), c, k_pe)
        kv, _ = self.kv_b_proj(c.squeeze(1))
        k_nope, v = kv.view(-1, self.num_local_heads, self.nope + self.v_dim).split([self.nope, self.v_dim], dim=-1)
        q = torch.cat([q_nope, q_pe.to(q_nope.dtype)], dim=-1)
        k = torch.cat([k_nope, k_pe.to(k_nope.dtype).expand(-1, self.num_local_heads, -1)], dim=-1)
        # As SGLang's DeepSeek MHA prefill: fa3 / trtllm_mla read these to run MHA over the new tokens only.
        forward_batch.mha_return_lse = False
        forward_batch.set_attn_attend_prefix_cache(False)
        o = self.attn_mha(q, k, v.contiguous(), forward_batch, save_kv_cache=False)
        return o.view(-1, self.num_local_heads, self.v_dim)

    def _forward_absorbed(self, q_nope, q_pe, c, k_pe, forward_batch: ForwardBatch) -> torch.Tensor:
        q_lat = torch.bmm(q_nope.transpose(0, 1), self.w_kc).transpose(0, 1)  # [T, h, kv_lora]

        if _backend_name(forward_batch) in FORWARD_ABSORB_CORE_ATTENTION_BACKENDS:
            o_lat = self.attn_mqa(q_lat, c, c, forward_batch, q_rope=q_pe, k_rope=k_pe)
        else:  # backends that take the rope part concatenated (torch_native, triton, flashmla, ...)
            q_full = torch.cat([q_lat, q_pe.to(q_lat.dtype)], dim=-1)
            k_full = torch.cat([c, k_pe.to(c.dtype)], dim=-1)
            o_lat = self.attn_mqa(q_full, k_full, c, forward_batch)
        o_lat = o_lat.view(-1, self.num_local_heads, self.kv_lora)
        return torch.bmm(o_lat.transpose(0, 1), self.w_vc).transpose(0, 1)  # [T, h, v]
