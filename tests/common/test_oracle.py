"""The transformers oracle against the formula-level reference forward, FP8 against bf16, and the
conditioning the generated weights promise (top-1 margins, zero-expert routing, residual growth)."""

import json
import statistics

import pytest
import torch

from longcat_common.checkpoint import checkpoint_shapes
from longcat_common.testing.tiny import write_checkpoint
from tests import oracle
from tests.common import reference_forward as ref

FP32_TOL = 1e-4  # logits reach ~30; fp32 summation-order noise is ~1e-5


@pytest.fixture(scope="module")
def reference(tiny_ckpt):
    return ref.load_checkpoint(tiny_ckpt)


@pytest.mark.parametrize("which", ["tiny_ckpt", "tiny_fp8_ckpt"])
def test_oracle_matches_reference_forward(which, request, prompt_ids):
    ckpt = request.getfixturevalue(which)
    model, (config, weights) = oracle.load_oracle(ckpt), ref.load_checkpoint(ckpt)
    diffs = [(oracle.logits(model, ids) - ref.forward(config, weights, ids)).abs().max().item() for ids in prompt_ids]
    print(f"{which}: oracle vs reference max |logit diff| {max(diffs):.2e}")
    assert max(diffs) < FP32_TOL


def test_oracle_helpers_agree_with_logits(tiny_ckpt, prompt_ids):
    model, ids = oracle.load_oracle(tiny_ckpt), prompt_ids[2]
    assert oracle.load_oracle(str(tiny_ckpt)) is model  # cached per directory and dtype
    logprobs = oracle.logits(model, ids).log_softmax(-1)
    lps = oracle.prompt_logprobs(model, ids)
    assert lps[0] is None and len(lps) == len(ids)
    assert lps[1:] == pytest.approx([logprobs[t - 1, ids[t]].item() for t in range(1, len(ids))], abs=1e-5)
    top = oracle.topk_logprobs(model, ids, 3)
    assert len(top) == len(ids) and list(top[-1].values()) == pytest.approx(logprobs[-1].topk(3).values.tolist())
    new, margins = oracle.greedy(model, ids, 8)
    recomputed = oracle.logits(model, ids + new)[len(ids) - 1 : -1]
    assert recomputed.argmax(-1).tolist() == new and len(margins) == 8
    gaps = recomputed.topk(2, dim=-1).values
    assert margins == pytest.approx((gaps[:, 0] - gaps[:, 1]).tolist(), abs=1e-3)


def test_oracle_load_is_strict(tmp_path):
    """A checkpoint with more experts than config.json says is refused, not silently half-loaded."""
    ckpt = write_checkpoint(tmp_path, overrides={"n_routed_experts": 15, "zero_expert_num": 9})
    with pytest.raises(ValueError, match="experts beyond n_routed_experts=15"):
        oracle.load_oracle(ckpt)


def test_fp8_weights_are_e4m3_roundings_of_bf16(reference, tiny_fp8_ckpt):
    """Each dequantised linear is within e4m3 rounding of its bf16 original (half an ulp, 2^-4 relative,
    or half the subnormal step, 2^-10 * amax / 448); everything else is bit-identical."""
    _, bf16 = reference
    config, fp8 = ref.load_checkpoint(tiny_fp8_ckpt)
    quantised = {n for n, (_, q) in checkpoint_shapes(config, include_mtp=True).items() if q}
    assert set(fp8) == set(bf16)
    for name, w in bf16.items():
        if name not in quantised:
            assert torch.equal(fp8[name], w), name
            continue
        err = (fp8[name] - w).abs()
        assert (err <= 2**-4 * w.abs() + 2**-10 * w.abs().max() / 448 + 1e-6 * w.abs()).all(), name
        assert 0 < err.norm() / w.norm() < 0.03, name  # ~2.7% for Gaussian weights


def test_fp8_oracle_close_to_bf16(tiny_ckpt, tiny_fp8_ckpt, prompt_ids):
    """e4m3 rounding moves each weight by ~2.7% (RMS, relative); the logits move by about as much, so
    the top-1 token only changes where the bf16 model's top-1 margin is within that noise (< 1 nat)."""
    bf16, fp8 = oracle.load_oracle(tiny_ckpt), oracle.load_oracle(tiny_fp8_ckpt)
    ref_logits = torch.cat([oracle.logits(bf16, ids) for ids in prompt_ids])
    fp8_logits = torch.cat([oracle.logits(fp8, ids) for ids in prompt_ids])
    rel = ((fp8_logits - ref_logits).norm() / ref_logits.norm()).item()
    p = ref_logits.log_softmax(-1)
    kl = (p.exp() * (p - fp8_logits.log_softmax(-1))).sum(-1)
    top2 = ref_logits.topk(2, dim=-1).values
    margin = top2[:, 0] - top2[:, 1]
    agree = ref_logits.argmax(-1) == fp8_logits.argmax(-1)
    print(f"FP8 vs bf16: logits rel RMS {rel:.4f}, max |diff| {(fp8_logits - ref_logits).abs().max():.3f}, "
          f"KL mean {kl.mean():.4f} max {kl.max():.4f}, top-1 agreement {agree.float().mean():.3f}, "
          f"bf16 margins where it differs {[round(m, 2) for m in margin[~agree].tolist()]}")
    assert rel < 0.05
    assert kl.mean() < 0.05
    assert agree.float().mean() > 0.9 and agree[margin > 1.0].all()


def test_generated_model_is_well_conditioned(tiny_ckpt, reference, prompt_ids):
    """Top-1 margins are clear, zero experts take 25-50% of the top-k slots and most of the routing
    weight for some tokens, and scaling them by 1 instead of routed_scaling_factor moves log-probs a lot."""
    config, weights = reference
    margins, zero_slots, zero_weight_share, moved = [], [], [], []
    for ids in prompt_ids:
        stats = []
        logits = ref.forward(config, weights, ids, stats=stats)
        top2 = logits.topk(2, dim=-1).values
        margins += (top2[:, 0] - top2[:, 1]).tolist()
        for layer in stats:
            zero_slots += layer["is_zero"].float().mean(-1).tolist()
            zero_weight_share += ((layer["weight"] * layer["is_zero"]).sum(-1) / layer["weight"].sum(-1)).tolist()
        unscaled = ref.forward(config, weights, ids, identity_scale=1.0)
        targets = torch.tensor(ids[1:])[:, None]
        moved += (logits.log_softmax(-1)[:-1].gather(1, targets)
                  - unscaled.log_softmax(-1)[:-1].gather(1, targets)).abs()[:, 0].tolist()
    confident = sum(m > 0.5 for m in margins) / len(margins)
    big_zero_share = sum(s > 0.5 for s in zero_weight_share) / len(zero_weight_share)
    print(f"top-1 margin median {statistics.median(margins):.2f}, > 0.5 nats at {confident:.0%} of positions; "
          f"zero-expert slot share {statistics.mean(zero_slots):.2f}, weight share {statistics.mean(zero_weight_share):.2f} "
          f"(> 0.5 for {big_zero_share:.0%} of tokens); |dlogprob| with zero experts x1: mean {statistics.mean(moved):.2f}")
    assert confident >= 0.85 and statistics.median(margins) > 2.0
    assert 0.25 <= statistics.mean(zero_slots) <= 0.5
    assert big_zero_share >= 0.2
    assert statistics.mean(moved) > 1.0


def test_residual_stream_grows_slowly(tiny_ckpt, prompt_ids):
    """The residual stream's RMS grows about additively (~1 per decoder layer), not geometrically."""
    model = oracle.load_oracle(tiny_ckpt)
    final = []
    hook = model.model.norm.register_forward_hook(lambda module, args, out: final.append(args[0]))
    with torch.no_grad():
        hidden = model.model(torch.tensor([prompt_ids[0]]), output_hidden_states=True).hidden_states
    hook.remove()
    rms = [h.pow(2).mean().sqrt().item() for h in (*hidden[:-1], final[0])]  # each decoder layer's input, final
    print("residual RMS entering each layer, then at the final norm:", [round(r, 2) for r in rms])
    assert all(0.5 < r < 1 + 2 * layer for layer, r in enumerate(rms))


def test_oracle_reads_config_like_the_hub(tiny_ckpt):
    raw = json.loads((tiny_ckpt / "config.json").read_text())
    config = oracle.load_oracle(tiny_ckpt).config
    assert "model_type" not in raw and config.model_type == "longcat_flash"
    assert config.rope_parameters["rope_theta"] == raw["rope_theta"] and config.head_dim == raw["qk_rope_head_dim"]
    assert config.num_hidden_layers == 2 * raw["num_layers"]
