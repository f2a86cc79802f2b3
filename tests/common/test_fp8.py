"""Block-FP8 dequantisation against a direct per-element computation."""

import pytest
import torch

from longcat_common.fp8 import FP8_DTYPE, Fp8CheckpointDequantizer, dequantize_block_fp8, quantize_block_fp8


def direct_dequant(w, s, block):
    out = torch.empty(w.shape)
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            out[i, j] = w[i, j].float() * s[i // block[0], j // block[1]]
    return out


def test_dequantize_matches_direct_computation():
    g = torch.Generator().manual_seed(0)
    w = (torch.randn(40, 70, generator=g) * 50).to(FP8_DTYPE)  # ragged edge blocks
    s = torch.rand(3, 5, generator=g) + 0.1
    got = dequantize_block_fp8(w, s, (16, 16), torch.float32)
    torch.testing.assert_close(got, direct_dequant(w, s, (16, 16)), rtol=0, atol=0)


def test_quantize_round_trip_within_e4m3_precision():
    w = torch.randn(300, 200)
    q, s = quantize_block_fp8(w)
    assert q.dtype == FP8_DTYPE and s.shape == (3, 2)
    back = dequantize_block_fp8(q, s, dtype=torch.float32)
    assert ((back - w).abs() <= w.abs() * 2 ** -3 + 1e-3).all()


def test_scale_shape_mismatch_is_named():
    q, _ = quantize_block_fp8(torch.randn(256, 256))
    with pytest.raises(ValueError, match=r"weight_scale_inv shape \(1, 2\).*expected \(2, 2\)"):
        dequantize_block_fp8(q, torch.ones(1, 2))


def test_checkpoint_stream_pairs_weights_with_scales_in_any_order():
    q, s = quantize_block_fp8(torch.randn(128, 256))
    stream = [("a.weight_scale_inv", s), ("norm.weight", torch.ones(4)), ("a.weight", q)]
    out = dict(Fp8CheckpointDequantizer()(iter(stream)))
    assert set(out) == {"a.weight", "norm.weight"} and out["a.weight"].dtype == torch.bfloat16
    with pytest.raises(ValueError, match="do not pair up.*b.weight"):
        list(Fp8CheckpointDequantizer()(iter([("b.weight", q)])))
