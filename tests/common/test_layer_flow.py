"""The shortcut-connected layer flow and the pieces folded in at load (MLA scale, RoPE)."""

import torch

from longcat_common.config import LongcatConfig
from longcat_common.layer import ShortcutLayerSteps, shortcut_layer_forward
from longcat_common.mla import fold_lora_scale
from longcat_common.rope import apply_rope_interleaved, rope_cos_sin_cache

from .test_config import CHAT


def _rms(x, w):
    return w * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)


def test_shortcut_flow_matches_the_spec_with_fused_add_norm_convention():
    g = torch.Generator().manual_seed(0)
    H = 16
    ws = [torch.rand(H, generator=g) + 0.5 for _ in range(4)]
    mats = [torch.randn(H, H, generator=g) / 4 for _ in range(5)]
    attn0, attn1, mlp0, mlp1, moe = [lambda v, m=m: torch.tanh(v @ m) for m in mats]
    x = torch.randn(5, H, generator=g)

    # spec section 2, literally
    r = x + attn0(_rms(x, ws[0]))
    m = _rms(r, ws[1])
    r = r + mlp0(m)
    r = r + attn1(_rms(r, ws[2]))
    expected = r + mlp1(_rms(r, ws[3])) + moe(m)

    def norm(w):
        def step(h, residual):
            residual = h if residual is None else h + residual
            return _rms(residual, w), residual
        return step
    steps = ShortcutLayerSteps((norm(ws[0]), norm(ws[2])), (attn0, attn1), (norm(ws[1]), norm(ws[3])),
                               (mlp0, mlp1), moe)
    h, residual = shortcut_layer_forward(steps, x, None)
    torch.testing.assert_close(h + residual, expected)


def test_lora_scale_folded_into_norm_weights_only():
    c = LongcatConfig.from_dict(CHAT)
    w = torch.ones(4)
    assert torch.equal(fold_lora_scale("model.layers.0.self_attn.1.q_a_layernorm.weight", w, c), 2 * w)
    torch.testing.assert_close(fold_lora_scale("x.self_attn.0.kv_a_layernorm.weight", w, c), 12 ** 0.5 * w)
    assert fold_lora_scale("x.self_attn.0.kv_a_proj_with_mqa.weight", w, c) is w
    off = LongcatConfig.from_dict({**CHAT, "mla_scale_q_lora": False})
    assert fold_lora_scale("x.q_a_layernorm.weight", w, off) is w


def test_lora_scale_fold_does_not_round_to_the_checkpoint_dtype():
    c = LongcatConfig.from_dict(CHAT)
    w = torch.rand(64).to(torch.bfloat16)
    out = fold_lora_scale("x.self_attn.0.kv_a_layernorm.weight", w, c)
    assert out.dtype == torch.float32 and torch.equal(out, w.float() * c.mla_lora_scales()[1])


def test_interleaved_rope_on_strided_views_matches_complex_rotation():
    T, heads, nope, rot = 6, 3, 8, 8
    cache = rope_cos_sin_cache(rot, 64, 1e7)
    q = torch.randn(T, heads, nope + rot)
    pos = torch.tensor([0, 1, 2, 5, 9, 63])
    got = apply_rope_interleaved(pos, q[..., nope:], cache)  # a non-contiguous 3-D view
    inv = 1.0 / (1e7 ** (torch.arange(0, rot, 2, dtype=torch.float64) / rot))
    angle = torch.polar(torch.ones(T, rot // 2, dtype=torch.float64), pos[:, None].double() * inv)
    pairs = torch.view_as_complex(q[..., nope:].double().reshape(T, heads, rot // 2, 2).contiguous())
    want = torch.view_as_real(pairs * angle[:, None]).flatten(-2)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
