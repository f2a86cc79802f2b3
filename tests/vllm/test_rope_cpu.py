"""vLLM's CPU rotary kernel on MLA's 3-D strided views: the stock path is wrong, ours is right.

vLLM's MLA wrapper calls ``rotary_emb(positions, q[..., nope:], k_pe.unsqueeze(1))``. In eager mode on
the CPU backend that reaches ``RotaryEmbedding.forward_cpu`` (csrc/cpu/pos_encoding.cpp), which
assumes a contiguous [tokens, heads * dim] layout (docs/vllm-cpu-rope.md).
"""

import torch
from vllm.config import VllmConfig, set_current_vllm_config
from vllm.model_executor.layers.rotary_embedding import get_rope

from longcat_common.rope import apply_rope_interleaved, rope_cos_sin_cache
from longcat_vllm.rope import MlaRope

T, HEADS, NOPE, ROT, MAX_POS, THETA = 7, 4, 128, 64, 4096, 1e7


def _inputs():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(T, HEADS, NOPE + ROT, generator=g)
    kv = torch.randn(T, 512 + ROT, generator=g)
    return torch.arange(T) * 3, q, kv


def _reference(positions, q, kv):
    """Per-element rotation on contiguous copies, independent of any kernel."""
    cache = rope_cos_sin_cache(ROT, MAX_POS, THETA)
    return (apply_rope_interleaved(positions, q[..., NOPE:].contiguous(), cache),
            apply_rope_interleaved(positions, kv[:, None, 512:].contiguous(), cache))


def _stock_rope():
    with set_current_vllm_config(VllmConfig()):
        return get_rope(ROT, max_position=MAX_POS, is_neox_style=False,
                        rope_parameters={"rope_type": "default", "rope_theta": THETA}, dtype=torch.float32)


def test_stock_cpu_kernel_is_wrong_on_strided_mla_views():
    positions, q, kv = _inputs()
    want_q, want_k = _reference(positions, q, kv)
    rope = _stock_rope()
    q_view, k_view = q.clone()[..., NOPE:], kv.clone()[:, None, 512:]
    got_q, got_k = rope.forward_cpu(positions, q_view, k_view)
    native_q, native_k = rope.forward_native(positions, q[..., NOPE:].clone(), kv[:, None, 512:].clone())
    torch.testing.assert_close(native_q, want_q, rtol=1e-5, atol=1e-5)  # the native path is right
    assert (got_q - want_q).abs().max() > 0.1 or (got_k - want_k).abs().max() > 0.1


def test_plugin_rope_is_right_on_strided_mla_views():
    positions, q, kv = _inputs()
    want_q, want_k = _reference(positions, q, kv)
    ours = MlaRope(ROT, MAX_POS, THETA)
    got_q, got_k = ours(positions, q[..., NOPE:], kv[:, None, 512:])
    torch.testing.assert_close(got_q, want_q, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got_k, want_k, rtol=1e-6, atol=1e-6)


def test_plugin_rope_kernel_path_equals_portable_rotation_bf16_yarn():
    """On the CPU in eager mode MlaRope runs vLLM's kernel on 2-D fp32 copies (the speed path);
    it must give exactly the portable fp32 rotation, rounded once, YaRN cache included."""
    yarn = {"factor": 4.0, "original_max_position_embeddings": 64, "beta_fast": 32.0, "beta_slow": 1.0,
            "mscale": 1.0, "mscale_all_dim": 1.0}
    cache = rope_cos_sin_cache(ROT, MAX_POS, THETA, yarn)
    ours = MlaRope(ROT, MAX_POS, THETA, yarn)
    positions, q, kv = _inputs()
    positions = positions * 40  # past the original context, where YaRN differs from plain RoPE
    q, kv = q.bfloat16(), kv.bfloat16()
    kv_before = kv.clone()
    got_q, got_k = ours(positions, q[..., NOPE:], kv[:, None, 512:])
    assert torch.equal(got_q, apply_rope_interleaved(positions, q[..., NOPE:], cache))
    assert torch.equal(got_k, apply_rope_interleaved(positions, kv[:, None, 512:], cache))
    assert torch.equal(kv, kv_before)  # the inputs are not rotated in place
