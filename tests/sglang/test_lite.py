"""LongCat-Flash-Lite (n-gram embeddings) served by our class on SGLang, CPU, fp32, against the engine-free
reference (tests/common/reference_forward.py): both config spellings (``lite-draft``: LongcatFlashNgramForCausalLM
with ``ngram_*`` and a good MTP draft; ``lite-oe``: LongcatCausalLM with ``oe_*``), one server each, started
together. The ``lite-draft`` server decodes with NEXTN (our MTP draft, LongCat's flags), so its greedy
tokens, equal to the reference's, are also NEXTN = no NEXTN, and its target verify forwards (accepted drafts
among them) read the histories too; ``lite-oe`` decodes plainly at TP=2 with EP (the concatenated tables
split by rows, the split inside a table; each rank holds half the experts). A third server, started with
them, serves ``lite-fp8`` (the lite weights in the block-FP8 layout, dequantised to bf16 at load; SGLang
refuses fp32 for an FP8 checkpoint) in bf16, against the fp32 reference within bf16 noise
(tests/lite_reference.py).

Every request's n-gram history must be right wherever SGLang splits or shares its tokens: prompts with EOS
(which ends a history) mid-prompt and at a scored position, prefill in chunks of 16 tokens, a prefix read
from the radix cache, concurrent requests, greedy decode (docs/lite.md). A model that dropped or mixed up
the history would move the log-probs by nats (tests/common/test_ngram.py), not by 1e-3.
"""

from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import torch

from longcat_sglang.model import ACTIVE_MESSAGE
from tests import lite_reference
from tests.common import reference_forward as ref
from tests.common import reference_mtp
from tests.conftest import LITE_PROMPTS
from tests.sglang.mtp_checks import DRAFT_ACTIVE, nextn_args
from tests.sglang.parity import FP32_CLEAR_MARGIN, FP32_TOL
from tests.sglang.server import SLEEP_ON_IDLE, any_model_servers

EOS = 2
CHUNK = 16  # --chunked-prefill-size: prompts past it are prefilled in pieces
NEW_TOKENS = 5
PRESETS = ("lite-draft", "lite-oe")  # fp32
FP8 = "lite-fp8"  # bf16


@pytest.fixture(scope="module")
def checkpoints(lite_ckpts):
    return {p: lite_ckpts(p) for p in (*PRESETS, FP8)}


@pytest.fixture(scope="module")
def servers(checkpoints, tmp_path_factory):
    args = {"lite-draft": nextn_args(checkpoints["lite-draft"]),
            "lite-oe": ["--dtype", "float32", "--tp", "2", "--enable-ep-moe"], FP8: ["--dtype", "bfloat16"]}
    logs = tmp_path_factory.mktemp("sglang-lite")
    with any_model_servers([(checkpoints[p], logs / f"{p}.log", [*args[p], "--chunked-prefill-size", str(CHUNK),
                                                                 *SLEEP_ON_IDLE], None) for p in args]) as started:
        for preset, server in zip(args, started):
            assert ACTIVE_MESSAGE in server.log(), f"{preset}: SGLang did not build longcat_sglang's class"
        assert DRAFT_ACTIVE in started[0].log(), "SGLang did not build longcat_sglang's NEXTN draft"
        yield dict(zip(args, started))


@pytest.fixture(scope="module")
def references(checkpoints):
    return {p: ref.load_checkpoint(checkpoints[p]) for p in PRESETS}


def prompts(vocab: int) -> list[list[int]]:
    """EOS mid-prompt (twice in a row too) and at scored positions; one prompt over two chunks long."""
    g = torch.Generator().manual_seed(0)
    rand = [int(t) for t in torch.randint(3, vocab, (40,), generator=g)]
    return [[5, 9, EOS, 700, 12, 33, EOS, EOS, 4, 88, 91, EOS, 17],
            rand[:CHUNK * 2 + 5] + [EOS, 7, 8, 9],
            [EOS, 300, 301, 302, EOS, 300, 301, 302, 303]]


def reference_logprobs(reference, ids: list[int]) -> list[float]:
    """Teacher-forced log-prob of ids[1:]."""
    lp = ref.forward(*reference, ids).log_softmax(-1)
    return [float(lp[t - 1, ids[t]]) for t in range(1, len(ids))]


def reference_greedy(reference, ids: list[int], new_tokens: int) -> tuple[list[int], list[float]]:
    """(greedy tokens, top-1 minus top-2 logit at each step)."""
    seq, margins = list(ids), []
    for _ in range(new_tokens):
        top = ref.forward(*reference, seq)[-1].topk(2)
        margins.append(float(top.values[0] - top.values[1]))
        seq.append(int(top.indices[0]))
    return seq[len(ids):], margins


def served_logprobs(server, ids: list[int], start: int = 0) -> list[float]:
    return [lp for lp, _token, _text in server.generate(ids, logprob_start_len=start)["meta_info"]["input_token_logprobs"]
            if lp is not None]


@pytest.mark.parametrize("preset", PRESETS)
def test_prompt_logprobs_equal_the_reference(servers, references, preset):
    server, reference = servers[preset], references[preset]
    worst = 0.0
    for ids in prompts(reference[0].vocab_size):
        got, want = served_logprobs(server, ids), reference_logprobs(reference, ids)
        assert len(got) == len(want)
        worst = max(worst, max(abs(a - b) for a, b in zip(got, want)))
    print(f"{preset}: prompt log-probs, fp32 server vs reference: max |d| {worst:.2e}")
    assert worst <= FP32_TOL


def test_extend_after_a_cached_prefix(servers, references):
    """The second request reads its first 20 tokens' KV from the radix cache: the histories of its new
    tokens come from slots the first request's forward wrote. (SGLang scores from the token after
    ``logprob_start_len``.)"""
    server, reference = servers["lite-draft"], references["lite-draft"]
    first = prompts(reference[0].vocab_size)[1]
    prefix, ids = first[:20], first[:20] + [EOS, 600, 601, 602, 603, 604]
    server.generate(first)
    meta = server.generate(ids, logprob_start_len=len(prefix))["meta_info"]
    got = [lp for lp, _token, _text in meta["input_token_logprobs"] if lp is not None]
    want = reference_logprobs(reference, ids)[-len(got):]
    worst = max(abs(a - b) for a, b in zip(got, want))
    print(f"extend after {meta['cached_tokens']} cached tokens: {len(got)} scored, max |d| {worst:.2e}")
    assert meta["cached_tokens"] >= len(prefix) - 1 and len(got) == len(ids) - len(prefix) - 1
    assert worst <= FP32_TOL


@pytest.mark.parametrize("preset", PRESETS)
def test_greedy_decode_and_concurrent_requests(servers, references, preset):
    """Greedy continuations, one by one, then all prompts (and repeats) at once: each decode (``lite-draft``:
    verify) step's history is its own request's."""
    server, reference = servers[preset], references[preset]
    batch = prompts(reference[0].vocab_size)
    served = [server.generate(ids, NEW_TOKENS, ignore_eos=True) for ids in batch]
    one_by_one = [out["output_ids"] for out in served]
    if preset == "lite-draft":  # SGLang's verify steps and accepted drafts: the reference's, prompt by prompt
        runs = [reference_mtp.speculative_greedy(*reference, ids, NEW_TOKENS, 1) for ids in batch]
        counts = [(m["spec_verify_ct"], m["spec_num_correct_drafts"]) for m in (out["meta_info"] for out in served)]
        print(f"NEXTN: (verify steps, accepted) {counts}, reference {[(len(r.rounds), r.accepted) for r in runs]}")
        assert counts == [(len(r.rounds), r.accepted) for r in runs] and sum(r.accepted for r in runs) > 0
    compared = 0
    for ids, got in zip(batch, one_by_one):
        want, margins = reference_greedy(reference, ids, NEW_TOKENS)
        clear = next((i for i, m in enumerate(margins) if m < FP32_CLEAR_MARGIN), NEW_TOKENS)
        assert got[:clear] == want[:clear], (ids, got, want, margins)
        compared += clear
    assert compared >= NEW_TOKENS * len(batch) // 2
    requests = [batch[i % len(batch)] for i in range(2 * len(batch))]
    with ThreadPoolExecutor(len(requests)) as pool:
        together = list(pool.map(lambda ids: server.new_ids(ids, NEW_TOKENS), requests))
    assert together == [one_by_one[i % len(batch)] for i in range(len(requests))]


def test_fp8_in_bf16_within_bf16_noise(servers, checkpoints):
    """Prompt and generated log-probs and greedy tokens of the bf16 server on the FP8 checkpoint, this module's
    prompts and LITE_PROMPTS, against the fp32 reference of the dequantised weights (tests/lite_reference.py's
    bf16 tolerances: greedy tokens are compared where the reference's margin is 2 x BF16_TOL)."""
    server, ckpt = servers[FP8], checkpoints[FP8]
    assert "fp8 dequantised to bf16" in server.log()
    worst, checked = 0.0, 0
    for ids in prompts(lite_reference.checkpoint(str(ckpt))[0].vocab_size) + LITE_PROMPTS:
        out = server.generate(ids, NEW_TOKENS, ignore_eos=True)
        meta = out["meta_info"]
        request = {"prompt": ids, "prompt_logprobs": [lp for lp, _token, _text in meta["input_token_logprobs"]],
                   "greedy": out["output_ids"], "logprobs": [lp for lp, _token, _text in meta["output_token_logprobs"]]}
        diff, n, wrong = lite_reference.compare(ckpt, request, lite_reference.ROUTING_TIE, 2 * lite_reference.BF16_TOL)
        assert not wrong, (ids, wrong)
        worst, checked = max(worst, diff), checked + n
    print(f"{FP8}: bf16 server vs fp32 reference, max |d| {worst:.3f} (routing near-ties left out), "
          f"{checked} greedy steps checked")
    assert worst <= lite_reference.BF16_TOL and checked >= NEW_TOKENS


def test_draft_trees_are_refused(monkeypatch):
    from longcat_sglang import ngram

    monkeypatch.setattr(ngram, "get_spec", lambda: SimpleNamespace(speculative_algorithm="EAGLE",
                                                                  speculative_eagle_topk=4))
    with pytest.raises(ValueError, match="use --speculative-eagle-topk 1 \\(got 4"):
        ngram.check_serving_options()


def test_sglangs_token_table_is_off_for_our_classes_only():
    from longcat_sglang.model import LongcatFlashForCausalLM
    from longcat_sglang.ngram import sglangs_token_table_off

    def from_model(cls, *, model, model_config, **kwargs):
        return model_config.use_ngram_embedding, model_config.ngram_embedding_n
    config = SimpleNamespace(use_ngram_embedding=True, ngram_embedding_n=4)
    ours = LongcatFlashForCausalLM.__new__(LongcatFlashForCausalLM)
    assert sglangs_token_table_off(from_model, None, model=ours, model_config=config) == (False, 0)
    assert sglangs_token_table_off(from_model, None, model=torch.nn.Linear(1, 1), model_config=config) == (True, 4)
    assert config.use_ngram_embedding  # SGLang's own config object is left alone
