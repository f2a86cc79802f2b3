"""LongCat-Flash-Lite (n-gram embeddings) served by our class in vLLM, against the reference forward.

Each engine runs tests/vllm/lite_run.py: LITE_PROMPTS all at once, with prompt log-probs, in a KV cache of
14 blocks of 16, so decode steps read their history from the slots of earlier steps and a preempted
request is recomputed. vLLM's CPU platform turns chunked prefill and prefix caching off for MLA models
(docs/lite.md): those cases are the SGLang tests'. Engines:
  * fp32-eager: the ngram_* spelling (LongcatFlashNgramForCausalLM), TP=1;
  * fp32-compiled-tp2-ep: the oe_* spelling (LongcatCausalLM), vLLM's compiled mode, TP=2 with EP;
  * bf16-fp8: the lite weights in the block-FP8 layout (dequantised at load);
  * fp32-mtp: the lite-draft checkpoint with our MTP draft, 2 draft tokens per step.
Tolerances: fp32 1e-3 (as for LongCat-Flash; measured ~2e-5), bf16 BF16_TOL against the fp32 reference of
the same (dequantised) weights, leaving out positions whose expert choice is near a tie (ROUTING_TIE;
measured 0.15 at most elsewhere). Greedy tokens: the reference's top-1 wherever its margin is clear
(tests/lite_reference.py; 0.1 nats in fp32, 2 x BF16_TOL in bf16).
"""

import pytest

from tests import lite_reference
from tests.common import reference_mtp
from tests.conftest import LITE_PROMPTS

from .lite_run import MAX_TOKENS

SERVED = {"lite": "LongcatFlashNgramForCausalLM served by longcat_vllm",
          "lite-oe": "LongcatCausalLM served by longcat_vllm"}
PHASES = {"together": LITE_PROMPTS}
CONFIGS = {
    "fp32-eager": dict(ckpt="lite", dtype="float32"),
    "fp32-compiled-tp2-ep": dict(ckpt="lite-oe", dtype="float32", enforce_eager=False, tp=2, ep=True),
    "bf16-fp8": dict(ckpt="lite-fp8"),
    "fp32-mtp": dict(ckpt="lite-draft", dtype="float32", phases={"one_by_one": LITE_PROMPTS[:4]},
                     speculative={"method": "mtp", "num_speculative_tokens": 2}),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def engine(request, offline_engine, lite_ckpts):
    specs, ckpts = {}, {}
    for name, config in CONFIGS.items():
        spec = {"phases": PHASES, **config, "script": "lite_run.py"}
        ckpts[name] = lite_ckpts(spec.pop("ckpt"))
        specs[name] = {**spec, "model": str(ckpts[name])}
    offline_engine.prefetch(specs.values())
    result, log = offline_engine(specs[request.param])
    assert result is not None, log[-4000:]
    return request.param, ckpts[request.param], result, log


def test_served_by_the_plugin(engine):
    name, ckpt, _, log = engine
    assert SERVED["lite-oe" if "oe" in ckpt.name else "lite"] in log
    if name == "bf16-fp8":
        assert "dequantising the block-FP8 checkpoint to bf16 at load" in log


def test_requests_match_the_reference(engine):
    """Prompt and generated log-probs and greedy tokens: earlier and scored EOS tokens, a 0, concurrent
    requests with different histories (two end alike), decode steps, a preempted request."""
    name, ckpt, result, _ = engine
    fp32 = name.startswith("fp32")
    tol, tie, margin = ((1e-3, 0.0, lite_reference.CLEAR_MARGIN) if fp32 else
                        (lite_reference.BF16_TOL, lite_reference.ROUTING_TIE, 2 * lite_reference.BF16_TOL))
    total_checked = 0
    for phase in (p for p in ("together", "one_by_one") if p in result):
        for req in result[phase]:
            diff, checked, wrong = lite_reference.compare(ckpt, req, tie, margin)
            print(f"{name} {phase} prompt of {len(req['prompt'])}: max |dlogprob| {diff:.2e}, "
                  f"{checked} greedy steps checked")
            assert diff <= tol and not wrong, (phase, req["prompt"], wrong)
            total_checked += checked
    assert total_checked >= 2 * MAX_TOKENS


def test_a_request_was_preempted(engine):
    """The crowded batch preempted a request: its recompute started its history again from the prompt."""
    _, _, result, _ = engine
    if "together" not in result:
        pytest.skip("the MTP engine runs its prompts in turn")
    assert result["counters"]["preemptions"] > 0, result["counters"]


def test_mtp_accepts_what_the_reference_accepts(engine):
    name, ckpt, result, _ = engine
    if name != "fp32-mtp":
        pytest.skip("speculative decoding: the fp32-mtp engine")
    config, weights = lite_reference.checkpoint(str(ckpt))
    runs = [reference_mtp.speculative_greedy(config, weights, r["prompt"], MAX_TOKENS, 2) for r in result["one_by_one"]]
    assert [r["greedy"] for r in result["one_by_one"]] == [run.tokens for run in runs]  # MTP greedy = plain greedy
    counters = result["counters"]
    print(f"fp32-mtp: accepted {counters['accepted']} of {counters['drafted']} (reference "
          f"{sum(r.accepted for r in runs)} of {sum(r.drafted for r in runs)})")
    assert (counters["accepted"], counters["drafted"]) == (sum(r.accepted for r in runs), sum(r.drafted for r in runs))
