"""The MTP layer flow, the MTP checkpoint stream, the reference draft and the good-draft preset."""

import pytest
import torch

from longcat_common.checkpoint import MTP_PREFIX
from longcat_common.config import MLA_CPU_LATENT
from longcat_common.loading import checkpoint_targets
from longcat_common.mtp import MtpLayerSteps, mtp_attention_layer_index, mtp_layer_forward
from longcat_common.testing.tiny import PRESETS

from . import reference_forward as ref
from . import reference_mtp

PROMPTS = [[1, 17, 200, 45, 99, 300, 12, 7, 650, 88, 23, 400], [1, 301, 302, 303, 304, 305, 306, 307]]


def _rms(x, w):
    return w * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)


def test_mtp_flow_matches_the_spec_with_fused_add_norm_convention():
    g = torch.Generator().manual_seed(0)
    H = 12
    ws = [torch.rand(H, generator=g) + 0.5 for _ in range(5)]
    eh = torch.randn(H, 2 * H, generator=g) / 4
    attn, mlp = [lambda v, m=torch.randn(H, H, generator=g) / 4: torch.tanh(v @ m) for _ in range(2)]
    emb, hid = torch.randn(5, H, generator=g), torch.randn(5, H, generator=g)

    # spec section 5, literally: embedding first, a dense pre-norm layer, the final norm
    x = torch.cat([_rms(emb, ws[0]), _rms(hid, ws[1])], -1) @ eh.T
    x = x + attn(_rms(x, ws[2]))
    x = x + mlp(_rms(x, ws[3]))
    expected = _rms(x, ws[4])

    def norm(w):
        def step(h, residual):
            residual = h if residual is None else h + residual
            return _rms(residual, w), residual
        return step
    steps = MtpLayerSteps(lambda v: _rms(v, ws[0]), lambda v: _rms(v, ws[1]), lambda v: v @ eh.T, norm(ws[2]),
                          attn, norm(ws[3]), mlp, norm(ws[4]))
    torch.testing.assert_close(mtp_layer_forward(steps, emb, hid), expected)


@pytest.fixture(scope="module")
def draft_ref(draft_ckpt):
    return ref.load_checkpoint(draft_ckpt)


def test_mtp_checkpoint_stream_maps_names_and_folds_the_lora_scale(draft_ref):
    config, w = draft_ref
    assert mtp_attention_layer_index(config) == 4
    targets = {(t.param, t.shard): x for t, x in checkpoint_targets(config, w.items(), False, mtp=True)}
    assert len(targets) == sum(n.startswith(MTP_PREFIX) for n in w)
    q_scale, _ = config.mla_lora_scales()
    torch.testing.assert_close(targets[("model.layers.0.self_attn.q_a_layernorm.weight", None)],
                               w["model.mtp.layers.0.self_attn.q_a_layernorm.weight"] * q_scale)
    assert torch.equal(targets[("model.layers.0.mlp.gate_up_proj.weight", 1)],
                       w["model.mtp.layers.0.transformer_layer.mlp.up_proj.weight"])
    assert torch.equal(targets[("model.layers.0.enorm.weight", None)], w["model.mtp.layers.0.enorm.m.weight"])


def test_draft_preset_keeps_the_cpu_mla_latent_and_awkward_sizes():
    p = PRESETS["draft"]
    assert p["kv_lora_rank"] + p["qk_rope_head_dim"] == MLA_CPU_LATENT
    assert p["num_attention_heads"] // 2 % 2 and p["hidden_size"] % 64 and p["q_lora_rank"] % 64
    assert p["ffn_hidden_size"] % 128 and p["expert_ffn_hidden_size"] % 64


def test_reference_draft_chains_its_own_hidden_state(draft_ref):
    config, w = draft_ref
    ids = PROMPTS[0]
    tokens, logits = reference_mtp.draft_tokens(config, w, ids, 2)
    torch.testing.assert_close(logits[0], reference_mtp.mtp_logits(config, w, ids)[-1])
    h = ref.final_hidden(config, w, ids)[:-1]
    step1 = reference_mtp.mtp_hidden(config, w, ids[1:], h)
    step2 = reference_mtp.mtp_hidden(config, w, ids[1:] + tokens[:1], torch.cat([h, step1[-1:]]))
    torch.testing.assert_close(logits[1], step2[-1] @ w["lm_head.weight"].T)
    torch.testing.assert_close(step2[:-1], step1)  # causal: earlier rows never see the new one


def test_speculative_reference_verifies_drafts_against_the_target(draft_ref):
    config, w = draft_ref
    prompt = PROMPTS[1]
    run = reference_mtp.speculative_greedy(config, w, prompt, 8, 2)
    seq, n = list(prompt) + run.tokens, len(prompt) + 1
    for k, accepted in run.rounds:  # replay each step with the target's own next-token choices
        drafts, _ = reference_mtp.draft_tokens(config, w, seq[:n], k)
        target = ref.forward(config, w, seq[:n] + drafts)[n - 1:].argmax(-1).tolist()
        assert drafts[:accepted] == target[:accepted] and (accepted == k or drafts[accepted] != target[accepted])
        n += accepted + 1
        if n >= len(seq):
            break
        assert seq[n - 1] == target[accepted]


def test_good_draft_preset_is_accepted(draft_ref):
    config, w = draft_ref
    continuations = [reference_mtp.greedy(config, w, p, 14) for p in PROMPTS]
    for k in (1, 2):
        runs = [reference_mtp.speculative_greedy(config, w, p, 12, k, c) for p, c in zip(PROMPTS, continuations)]
        acceptance = sum(r.accepted for r in runs) / sum(r.drafted for r in runs)
        print(f"k={k}: reference acceptance {acceptance:.2f}")
        assert acceptance >= 0.8


def test_random_checkpoint_draft_is_rarely_accepted(tiny_ckpt):
    """The contrast: on the random tiny preset the draft almost never agrees, whatever it computes."""
    config, w = ref.load_checkpoint(tiny_ckpt)
    run = reference_mtp.speculative_greedy(config, w, PROMPTS[0], 6, 1)
    assert run.accepted / run.drafted <= 0.4
