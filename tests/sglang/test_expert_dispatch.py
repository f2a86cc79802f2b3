"""Expert parallelism never dispatches a zero expert: the routing of common/routing.py through SGLang's own
``StandardDispatcher`` for each of two EP ranks, then the plugin's CPU expert method on each rank's share.

The test_parallel.py server proves the numbers of a served TP=2/EP=2 model; this proves, on the real
router and MoE input of the tiny checkpoint, what reaches the experts: every real-expert slot on exactly
one rank, no zero-expert slot on any (id -1 to the dispatcher, and -1 again after its global -> local id
map), and the ranks' sum plus the identity term equal to transformers' MoE output.
"""

import types

import pytest
import torch
import torch.nn.functional as F

from longcat_common.routing import add_identity, route_with_zero_experts
from longcat_sglang.moe import MaskedSlotsNativeMoEMethod
from sglang.srt.layers.moe.moe_runner import MoeRunnerConfig
from sglang.srt.layers.moe.token_dispatcher import standard
from sglang.srt.layers.moe.topk import StandardTopKOutput
from tests import oracle

EP = 2


@pytest.fixture(scope="module")
def moe_layer_io(tiny_ckpt, prompt_ids):
    return oracle.moe_layer_io(tiny_ckpt, prompt_ids[2])


def _dispatch(monkeypatch, rank: int, n_routed: int, hidden, topk):
    """SGLang's StandardDispatcher of EP rank ``rank``."""
    monkeypatch.setattr(standard, "get_parallel", lambda: types.SimpleNamespace(moe_ep_size=EP, moe_ep_rank=rank))
    local = n_routed // EP
    dispatcher = standard.StandardDispatcher(
        MoeRunnerConfig(num_experts=n_routed, num_local_experts=local, num_fused_shared_experts=0))
    # As longcat_sglang.moe gives it off CUDA (SGLang builds the same map on the accelerator).
    dispatcher.local_expert_mapping = torch.where(torch.arange(n_routed) // local == rank,
                                                  torch.arange(n_routed) % local, -1).to(torch.int32)
    return dispatcher.dispatch(hidden_states=hidden, topk_output=topk)


def test_two_ep_ranks_compute_every_real_slot_once_and_no_zero_slot(monkeypatch, moe_layer_io):
    moe, x, want = moe_layer_io
    router, experts, n_routed = moe.router, moe.experts, moe.experts.num_routed_experts
    logits = F.linear(x.float(), router.classifier.weight.float())
    routing = route_with_zero_experts(logits, router.e_score_correction_bias, router.top_k, n_routed,
                                      router.routed_scaling_factor)
    real_slots = routing.topk_ids >= 0
    assert 0 < real_slots.sum() < real_slots.numel(), "the prompt must route to both kinds of expert"

    local, total, slots_done = n_routed // EP, torch.zeros_like(x), torch.zeros_like(real_slots, dtype=torch.int)
    for rank in range(EP):
        out = _dispatch(monkeypatch, rank, n_routed, x, StandardTopKOutput(routing.topk_weights, routing.topk_ids,
                                                                           logits))
        ids = out.topk_output.topk_ids
        owned = real_slots & (routing.topk_ids // local == rank)
        assert torch.equal(ids >= 0, owned), f"rank {rank} was sent slots it does not own, or zero experts"
        slots_done += owned.int()
        layer = types.SimpleNamespace(w13_weight=experts.gate_up_proj[rank * local:(rank + 1) * local],
                                      w2_weight=experts.down_proj[rank * local:(rank + 1) * local])
        total += MaskedSlotsNativeMoEMethod().forward_native(layer, out).hidden_states

    assert torch.equal(slots_done, real_slots.int()), "every real-expert slot on exactly one rank"
    got = add_identity(total, routing.identity_coef, x)  # once, after the (here: summed) EP reduction
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
