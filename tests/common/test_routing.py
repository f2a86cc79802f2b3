"""Zero-expert routing against a slow per-token loop written from the reference semantics."""

import pytest
import torch

from longcat_common.routing import MASKED_SLOT, add_identity, ids_for_kernel, route_with_zero_experts

N_ROUTED, N_ZERO, TOP_K, RSF = 12, 6, 4, 6.0


def slow_moe(x, logits, bias, experts):
    """Per token: softmax, biased choice, unbiased weights * rsf; identity expert returns its input."""
    out = torch.zeros_like(x, dtype=torch.float64)
    for t in range(x.shape[0]):
        p = logits[t].double().softmax(-1)
        chosen = sorted(range(p.numel()), key=lambda e: -(p[e] + bias[e]).item())[:TOP_K]
        for e in chosen:
            y = experts[e](x[t].double()) if e < N_ROUTED else x[t].double()
            out[t] += RSF * p[e] * y
    return out


@pytest.fixture
def case():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 8, generator=g)
    logits = 2 * torch.randn(32, N_ROUTED + N_ZERO, generator=g)
    bias = torch.zeros(N_ROUTED + N_ZERO)
    bias[N_ROUTED:] = 0.05  # steer many slots to zero experts, as LongCat's PID-controlled bias does
    mats = [torch.randn(8, 8, generator=g, dtype=torch.float64) for _ in range(N_ROUTED)]
    experts = [lambda v, m=m: torch.tanh(m @ v) for m in mats]
    return x, logits, bias, experts


def test_routing_matches_slow_loop(case):
    x, logits, bias, experts = case
    r = route_with_zero_experts(logits, bias, TOP_K, N_ROUTED, RSF)
    routed = torch.zeros(x.shape, dtype=torch.float64)
    for t in range(x.shape[0]):
        for e, w in zip(r.topk_ids[t].tolist(), r.topk_weights[t].tolist()):
            if e != MASKED_SLOT:
                routed[t] += w * experts[e](x[t].double())
    out = add_identity(routed, r.identity_coef.double(), x.double())
    torch.testing.assert_close(out, slow_moe(x, logits, bias, experts), rtol=1e-5, atol=1e-5)


def test_masked_slot_contract(case):
    x, logits, bias, _ = case
    r = route_with_zero_experts(logits, bias, TOP_K, N_ROUTED, RSF)
    masked = r.topk_ids == MASKED_SLOT
    assert r.topk_ids.dtype == torch.int32 and r.topk_ids.shape == (32, TOP_K)
    assert 0.2 < masked.float().mean() < 0.9, "the test case must exercise zero experts"
    assert ((r.topk_ids >= 0) & (r.topk_ids < N_ROUTED) | masked).all()
    assert (r.topk_weights[masked] == 0).all() and (r.topk_weights[~masked] > 0).all()
    # weights sum (real + identity) = rsf * chosen probability mass, no renormalisation
    probs = logits.softmax(-1)
    chosen = torch.topk(probs + bias, TOP_K).indices
    torch.testing.assert_close(r.topk_weights.sum(-1) + r.identity_coef, RSF * probs.gather(1, chosen).sum(-1))


def test_zero_experts_scaled_by_routed_scaling_factor(case):
    x, logits, bias, _ = case
    r = route_with_zero_experts(logits, bias, TOP_K, N_ROUTED, RSF)
    unscaled = route_with_zero_experts(logits, bias, TOP_K, N_ROUTED, 1.0)
    torch.testing.assert_close(r.identity_coef, RSF * unscaled.identity_coef)


def test_bias_only_steers_choice():
    logits = torch.tensor([[3.0, 0.0, 0.0, 0.0]])
    bias = torch.tensor([0.0, 0.0, 0.0, 10.0])  # expert 3 is a zero expert, chosen only through the bias
    r = route_with_zero_experts(logits, bias, 1, 3, 2.0)
    assert r.topk_ids.tolist() == [[MASKED_SLOT]]
    torch.testing.assert_close(r.identity_coef, 2.0 * logits.softmax(-1)[:, 3])


def test_ids_for_kernel_fills_only_masked_slots(case):
    _, logits, bias, _ = case
    r = route_with_zero_experts(logits, bias, TOP_K, N_ROUTED, RSF)
    ids = ids_for_kernel(r.topk_ids, 7)
    masked = r.topk_ids == MASKED_SLOT
    assert (ids[masked] == 7).all() and (ids[~masked] == r.topk_ids[~masked]).all()


def test_masked_swiglu_experts_skip_masked_slots(case):
    from longcat_common.experts import masked_swiglu_experts

    x, logits, bias, _ = case
    g = torch.Generator().manual_seed(1)
    w13, w2 = torch.randn(N_ROUTED, 2 * 6, 8, generator=g), torch.randn(N_ROUTED, 8, 6, generator=g)
    r = route_with_zero_experts(logits, bias, TOP_K, N_ROUTED, RSF)
    want = torch.zeros(x.shape, dtype=torch.float64)
    for t in range(x.shape[0]):
        for e, w in zip(r.topk_ids[t].tolist(), r.topk_weights[t].tolist()):
            if e != MASKED_SLOT:
                gate, up = (w13[e].double() @ x[t].double()).chunk(2)
                want[t] += w * (w2[e].double() @ (torch.nn.functional.silu(gate) * up))
    got = masked_swiglu_experts(x, w13, w2, r.topk_ids, r.topk_weights)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)
