"""Our MLA on SGLang's ``triton`` attention backend kernels, in the Triton interpreter (run by
test_triton_kernels.py in its own process with TRITON_INTERPRET=1).

Runs for real: our ``LongcatMLA.forward`` (layer 0, fp32, the tiny preset's 4 heads and the odd preset's 5)
choosing its form by SGLang's DeepSeek rule for the triton backend, and SGLang's Triton kernels
``extend_attention_fwd`` and ``decode_attention_fwd`` (``has_mla=True``), called with the tensors our
layer hands ``RadixAttention`` and the arguments ``TritonAttnBackend.forward_extend`` /
``forward_decode`` build from them (the backend itself needs a GPU model runner to construct).
In its place, from this file: the latent KV pool (``MLATokenToKVPool``'s layout: one [slots, 1, kv_lora +
rope] buffer per layer, the value its first kv_lora columns), the batch metadata (one request, slots
0..n-1: ``kv_indptr`` / ``kv_indices`` / ``qo_indptr``) and the decode split count (4 of 8).
Reference: transformers' attention sublayer on the same prompt, fp32. Cases: a fresh prefill (MHA
form), an extend over a cached prefix and one decode step (absorbed form, reading the cache the earlier
steps wrote).
"""

import os
import types

import pytest
import torch

from longcat_common.testing.tiny import write_checkpoint
from tests import oracle

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("needs TRITON_INTERPRET=1 before Triton is imported (tests/sglang/test_triton_kernels.py)",
                allow_module_level=True)

from longcat_sglang import attention, model as sgl_model  # noqa: E402
from sglang.kernels.ops.attention.decode_attention import decode_attention_fwd  # noqa: E402
from sglang.kernels.ops.attention.extend_attention import extend_attention_fwd  # noqa: E402
from sglang.srt.configs.model_config import ModelConfig  # noqa: E402
from sglang.srt.model_executor.forward_batch_info import ForwardMode  # noqa: E402
from sglang.srt.model_loader.weight_utils import safetensors_weights_iterator  # noqa: E402
from tests.sglang.interpreted_moe import sglang_in_process  # noqa: E402
from tests.sglang.test_gpu_branch import _batch, _serving  # noqa: E402

SLOTS, MAX_KV_SPLITS, KV_SPLITS = 256, 8, 4


class LatentPool:
    """MLATokenToKVPool's buffers: per layer [slots, 1, kv_lora + rope]; value = the first kv_lora columns."""

    def __init__(self, kv_lora: int, rope: int):
        self.kv_lora, self.rope, self.buffers = kv_lora, rope, {}

    def key(self, layer_id: int) -> torch.Tensor:  # NaN where nothing was written: reading it shows
        return self.buffers.setdefault(layer_id, torch.full((SLOTS, 1, self.kv_lora + self.rope), float("nan")))

    def value(self, layer_id: int) -> torch.Tensor:
        return self.key(layer_id)[..., :self.kv_lora]

    def set_mla_kv_buffer(self, layer, loc_info, c, k_pe):
        self.key(layer.layer_id)[loc_info.loc] = torch.cat([c, k_pe], dim=-1)


class TritonBackendKernels(torch.nn.Module):
    """Stands in for RadixAttention -> TritonAttnBackend: the backend's kernel calls, one request."""

    def __init__(self, replaced, pool: LatentPool):
        super().__init__()
        self.layer, self.pool, self.layer_id = replaced, pool, replaced.layer_id

    def forward(self, q, k, v, forward_batch, save_kv_cache=True, **kwargs):
        assert not kwargs, "the triton backend takes the rope part concatenated"
        layer, batch = self.layer, forward_batch
        key, value = self.pool.key(layer.layer_id), self.pool.value(layer.layer_id)
        if save_kv_cache:  # MLA pool: set_kv_buffer stores k (latent | rope); v is its view
            key[batch.out_cache_loc] = k
        heads, prefix, new = layer.tp_q_head_num, batch.extend_prefix_lens_cpu[0], q.shape[0]
        o = q.new_empty(new, heads * layer.v_head_dim)
        kv_indptr = torch.tensor([0, prefix if not batch.forward_mode.is_decode() else prefix + new],
                                 dtype=torch.int32)
        kv_indices = torch.arange(int(kv_indptr[1]), dtype=torch.int64)
        if batch.forward_mode.is_decode():
            decode_attention_fwd(
                q.view(-1, heads, layer.qk_head_dim), key, value, o.view(-1, heads, layer.v_head_dim),
                kv_indptr, kv_indices, torch.empty(new, heads, MAX_KV_SPLITS, layer.v_head_dim),
                torch.empty(new, heads, MAX_KV_SPLITS), torch.full((new,), KV_SPLITS, dtype=torch.int32),
                MAX_KV_SPLITS, layer.scaling, 1.0, 1.0, logit_cap=0.0, has_mla=True, page_size=1,
                enable_lean=False)
        else:
            extend_attention_fwd(
                q.view(-1, heads, layer.qk_head_dim), k.contiguous(), v.contiguous(),
                o.view(-1, heads, layer.v_head_dim), key, value, torch.tensor([0, new], dtype=torch.int32),
                kv_indptr, kv_indices, None, True, None, new, 1.0, 1.0, layer.scaling, logit_cap=0.0,
                page_size=1, extend_seq_lens_cpu=[new])
        return o


@pytest.fixture(scope="module", params=["tiny", "odd"], ids=["4-heads", "5-heads"])
def checkpoint(request, tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp(request.param), preset=request.param, seed=0)


@pytest.fixture(scope="module")
def layer_io(checkpoint, long_prompt_ids):
    """(our layer-0 first attention sublayer, its input [T, H], transformers' output [T, H]) on 40 tokens."""
    model, seen = oracle.load_oracle(checkpoint), {}
    handle = model.model.layers[0].self_attn[0].register_forward_hook(
        lambda _m, args, kwargs, out: seen.update(x=kwargs.get("hidden_states", args[0] if args else None)[0],
                                                  y=out[0][0]), with_kwargs=True)
    try:
        oracle.logits(model, long_prompt_ids[:40])
    finally:
        handle.remove()
    with sglang_in_process(checkpoint):
        ours = sgl_model.LongcatFlashForCausalLM(ModelConfig(str(checkpoint)).hf_config, None)
        ours.load_weights(safetensors_weights_iterator(sorted(str(p) for p in checkpoint.glob("*.safetensors"))))
        yield ours.model.layers[0].self_attn[0], seen["x"], seen["y"]


def _run(monkeypatch, attn, x, pool, mode, prefix: int, new: int):
    batch = _batch(mode, [prefix], seq=[prefix + new])
    batch.out_cache_loc = torch.arange(prefix, prefix + new)  # one request in slots 0..n-1
    return attn(torch.arange(prefix, prefix + new), x[prefix:prefix + new], batch), batch


@torch.no_grad()
def test_triton_backend_kernels_match_transformers(monkeypatch, layer_io):
    attn, x, want = layer_io
    pool = LatentPool(attn.kv_lora, attn.rope_dim)
    monkeypatch.setattr(attention, "get_token_to_kv_pool", lambda: pool)
    for name in ("attn_mqa", "attn_mha"):
        monkeypatch.setitem(attn._modules, name, TritonBackendKernels(getattr(attn, name), pool))
    _serving(monkeypatch, "triton")
    t = x.shape[0]
    steps = (("prefill", ForwardMode.EXTEND, 0, 24), ("extend over a cached prefix", ForwardMode.EXTEND, 24, 15),
             ("decode", ForwardMode.DECODE, 39, 1))
    for what, mode, prefix, new in steps:
        got, batch = _run(monkeypatch, attn, x, pool, mode, prefix, new)
        assert attn.uses_mha(batch) == (what == "prefill"), what
        err = (got - want[prefix:prefix + new]).abs().max().item()
        print(f"{attn.num_local_heads} heads, {what}: max |err| {err:.3g}")
        assert err <= 1e-4 * want.abs().max().item(), what
    assert prefix + new == t
