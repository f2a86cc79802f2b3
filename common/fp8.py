"""Block-FP8 (DeepSeek-V3 / LongCat-Flash-Chat-FP8 layout) quantisation helpers.

A quantised linear weight ``w`` [out, in] is stored as e4m3 with an fp32
``weight_scale_inv`` [ceil(out/bo), ceil(in/bi)]; the real weight is
``w[i, j] * scale_inv[i // bo, j // bi]``.
"""

import torch

BLOCK = (128, 128)
FP8_DTYPE = torch.float8_e4m3fn


def _expand_scale(scale_inv: torch.Tensor, shape: torch.Size, block) -> torch.Tensor:
    bo, bi = block
    rows = scale_inv.repeat_interleave(bo, dim=-2)[..., : shape[-2], :]
    return rows.repeat_interleave(bi, dim=-1)[..., : shape[-1]]


def dequantize_block_fp8(weight: torch.Tensor, scale_inv: torch.Tensor, block=BLOCK,
                         dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """weight [..., out, in] fp8, scale_inv [..., ceil(out/bo), ceil(in/bi)] fp32 -> [..., out, in] dtype."""
    expected = tuple(-(-weight.shape[d] // block[i]) for i, d in enumerate((-2, -1)))
    if tuple(scale_inv.shape[-2:]) != expected:
        raise ValueError(f"weight_scale_inv shape {tuple(scale_inv.shape)} does not fit weight "
                         f"{tuple(weight.shape)} with {block[0]}x{block[1]} blocks (expected {expected})")
    full = weight.to(torch.float32) * _expand_scale(scale_inv.to(torch.float32), weight.shape, block)
    return full.to(dtype)


def quantize_block_fp8(weight: torch.Tensor, block=BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """weight [out, in] float -> (fp8 weight [out, in], fp32 scale_inv [ceil(out/bo), ceil(in/bi)])."""
    out_f, in_f = weight.shape
    bo, bi = block
    nb_o, nb_i = -(-out_f // bo), -(-in_f // bi)
    padded = torch.zeros(nb_o * bo, nb_i * bi, dtype=torch.float32)
    padded[:out_f, :in_f] = weight.float()
    blocks = padded.view(nb_o, bo, nb_i, bi)
    amax = blocks.abs().amax(dim=(1, 3)).clamp(min=1e-12)
    scale_inv = amax / torch.finfo(FP8_DTYPE).max
    q = (blocks / scale_inv[:, None, :, None]).to(FP8_DTYPE).view(nb_o * bo, nb_i * bi)
    return q[:out_f, :in_f].contiguous(), scale_inv


class Fp8CheckpointDequantizer:
    """Turns a stream of checkpoint (name, tensor) pairs with block-FP8 weights into bf16 weights.

    Each ``X.weight`` (fp8) is held until its ``X.weight_scale_inv`` arrives (either order), then
    yielded dequantised under the name ``X.weight``; every other tensor passes through. ``finish()``
    raises if a weight never met its scale (or a scale its weight).
    """

    def __init__(self, block=BLOCK, dtype: torch.dtype = torch.bfloat16):
        self.block, self.dtype = block, dtype
        self._weights: dict[str, torch.Tensor] = {}
        self._scales: dict[str, torch.Tensor] = {}

    def __call__(self, weights):
        for name, tensor in weights:
            if name.endswith(".weight_scale_inv"):
                base = name[: -len("_scale_inv")]
                self._scales[base] = tensor
            elif tensor.dtype == FP8_DTYPE:
                base = name
                self._weights[base] = tensor
            else:
                yield name, tensor
                continue
            if base in self._weights and base in self._scales:
                weight, scale = self._weights.pop(base), self._scales.pop(base)
                try:
                    yield base, dequantize_block_fp8(weight, scale, self.block, self.dtype)
                except ValueError as err:
                    raise ValueError(f"{base}: {err}") from None
        self.finish()

    def finish(self):
        if self._weights or self._scales:
            lonely = sorted(self._weights)[:3] + sorted(n + "_scale_inv" for n in self._scales)[:3]
            raise ValueError(f"FP8 checkpoint: weights and weight_scale_inv do not pair up: {lonely}")
