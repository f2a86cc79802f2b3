"""longcat_common.rope against transformers' own RoPE code (an independent implementation)."""

import pytest
import torch
from transformers import LongcatFlashConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.longcat_flash.modeling_longcat_flash import yarn_apply_mscale

from longcat_common.config import LongcatConfig
from longcat_common.rope import apply_rope_interleaved, rope_cos_sin_cache
from tests.common.test_config import CHAT

YARN = {"type": "yarn", "factor": 8.0, "original_max_position_embeddings": 64, "beta_fast": 32, "beta_slow": 1,
        "mscale": 1.0, "mscale_all_dim": 1.0}


def _transformers_cache(rope_scaling, max_position: int) -> torch.Tensor:
    hf = LongcatFlashConfig(hidden_size=256, num_attention_heads=4, qk_rope_head_dim=64, head_dim=64,
                            max_position_embeddings=max_position, rope_theta=1e7, rope_scaling=rope_scaling)
    kind = hf.rope_parameters["rope_type"]
    init = ROPE_INIT_FUNCTIONS[kind] if kind != "default" else None
    inv_freq, magnitude = init(hf) if init else (1.0 / 1e7 ** (torch.arange(0, 64, 2).float() / 64), 1.0)
    freqs = torch.outer(torch.arange(max_position).float(), inv_freq)
    return torch.cat([freqs.cos(), freqs.sin()], dim=-1) * magnitude, hf


# (transformers departs from DeepSeek's rule only when mscale != 1 and mscale_all_dim is 0: it then ignores
# mscale; the engines' CUDA ropes and longcat_common follow DeepSeek.)
@pytest.mark.parametrize("rope_scaling", [None, YARN, {**YARN, "mscale_all_dim": 0.0}, {**YARN, "factor": 40.0}])
def test_cos_sin_cache_matches_transformers(rope_scaling):
    want, hf = _transformers_cache(rope_scaling, 512)
    lc = LongcatConfig.from_dict({**CHAT, "rope_scaling": rope_scaling, "max_position_embeddings": 512})
    got = rope_cos_sin_cache(64, 512, 1e7, lc.rope_scaling)
    torch.testing.assert_close(got, want, rtol=0, atol=5e-5)  # transformers builds its angles in fp32
    assert lc.softmax_scale() == pytest.approx(yarn_apply_mscale(hf.rope_parameters, 192 ** -0.5), rel=1e-12)


def test_yarn_changes_only_positions_it_should():
    yarn = LongcatConfig.from_dict({**CHAT, "rope_scaling": YARN}).rope_scaling
    plain, scaled = rope_cos_sin_cache(64, 512, 1e7), rope_cos_sin_cache(64, 512, 1e7, yarn)
    assert torch.equal(plain[0], torch.cat([torch.ones(32), torch.zeros(32)]))
    assert (scaled - plain).abs().max() > 0.5


def test_strided_view_rotation():
    x = torch.randn(5, 3, 192)[..., 128:]  # MLA's q[..., nope:] view
    cache = rope_cos_sin_cache(64, 16, 1e7)
    got = apply_rope_interleaved(torch.arange(5), x, cache)
    torch.testing.assert_close(got, apply_rope_interleaved(torch.arange(5), x.contiguous(), cache))
