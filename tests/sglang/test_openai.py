"""SGLang's OpenAI-compatible endpoints serving the tiny checkpoint, driven by the ``openai`` client.

The server is started by examples/sglang_serve.py, and examples/sglang_client.py runs against it.
It runs in float32: the 16-concurrent-requests check compares batched against one-by-one greedy
outputs, and in bf16 another batch shape can flip a near-tie of random weights. In float32 the served
log-probs also match the fp32 oracle to rounding, which the first test checks.
"""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from openai import OpenAI
from transformers import AutoTokenizer

from tests import aborts, bad_requests, metrics_check, oracle
from tests.sglang.server import EXAMPLE_LAUNCHER, sglang_server

EXAMPLE_CLIENT = Path(__file__).parents[2] / "examples" / "sglang_client.py"

MODEL = "longcat-tiny"
CLEAR_MARGIN = 0.05  # oracle top-1 minus top-2 logit; float32 rounding is ~1e-4
FP32_TOL = 2e-3  # max |d logprob| between the float32 server and the fp32 oracle
NEW_TOKENS = 8


@pytest.fixture(scope="module")
def server(tiny_ckpt, tmp_path_factory):
    log = tmp_path_factory.mktemp("sglang-fp32") / "server.log"
    args = ["--dtype", "float32", "--served-model-name", MODEL, "--max-running-requests", "32", "--enable-metrics"]
    with sglang_server(tiny_ckpt, log, args, launcher=EXAMPLE_LAUNCHER) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return OpenAI(base_url=server.url + "/v1", api_key="none")


@pytest.fixture(scope="module")
def reference(tiny_ckpt):
    """(tokenizer, ids -> oracle greedy ids cut before the first step with an unclear margin)."""
    model, tok = oracle.load_oracle(tiny_ckpt), AutoTokenizer.from_pretrained(tiny_ckpt)

    def clear_greedy(ids: list[int]) -> list[int]:
        new, margins = oracle.greedy(model, ids, NEW_TOKENS)
        return new[: next((i for i, m in enumerate(margins) if m < CLEAR_MARGIN), NEW_TOKENS)]
    return tok, clear_greedy


def _complete(client, prompt: str, **kw):
    return client.completions.create(model=MODEL, prompt=prompt, max_tokens=NEW_TOKENS, temperature=0, **kw)


def test_float32_logprobs_match_oracle_to_rounding(server, tiny_ckpt, prompt_ids):
    model = oracle.load_oracle(tiny_ckpt)
    gap = max(abs(a - b) for ids in prompt_ids
              for a, b in zip(server.prompt_logprobs(ids)[1:], oracle.prompt_logprobs(model, ids)[1:]))
    print(f"\nserver float32 vs oracle fp32: max |d logprob| = {gap:.2e}")
    assert gap <= FP32_TOL


def test_completions_match_oracle(client, reference, prompts):
    tok, clear_greedy = reference
    for prompt in prompts[:3]:
        want = clear_greedy(tok(prompt)["input_ids"])
        assert len(want) >= 3
        assert _complete(client, prompt).choices[0].text.startswith(tok.decode(want))


def test_chat_uses_the_tokenizer_template(client, reference):
    tok, clear_greedy = reference
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me about lamps."}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert "[Round 0] USER:" in tok.decode(ids)
    r = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=NEW_TOKENS, temperature=0)
    assert r.usage.prompt_tokens == len(ids)
    want = clear_greedy(ids)
    assert len(want) >= 3 and r.choices[0].message.content.lstrip().startswith(tok.decode(want).lstrip())


def test_streaming_equals_non_streaming(client, prompts):
    streamed = "".join(c.choices[0].text for c in _complete(client, prompts[0], stream=True))
    assert streamed == _complete(client, prompts[0]).choices[0].text
    messages = [{"role": "user", "content": prompts[1]}]
    chunks = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=NEW_TOKENS,
                                            temperature=0, stream=True)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    whole = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=NEW_TOKENS, temperature=0)
    assert streamed == whole.choices[0].message.content


def test_sixteen_concurrent_requests_equal_one_by_one(client, prompts):
    batch = [f"{prompts[i % len(prompts)]} ({i})" for i in range(16)]
    one_by_one = [_complete(client, p).choices[0].text for p in batch]
    with ThreadPoolExecutor(16) as pool:
        concurrent = list(pool.map(lambda p: _complete(client, p).choices[0].text, batch))
    assert concurrent == one_by_one


def test_example_client(server):
    out = subprocess.run([sys.executable, str(EXAMPLE_CLIENT), server.url, "Hello"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"model: {MODEL}" in out.stdout and "prompt log-probs:" in out.stdout, out.stdout


@pytest.fixture(scope="module")
def greedy_before(server, prompts):
    return bad_requests.greedy_text(server.url, prompts[0])


@pytest.mark.parametrize("case", bad_requests.cases())
def test_bad_request_is_a_4xx_and_the_server_keeps_serving(server, greedy_before, prompts, case):
    """Ids past the vocabulary, huge logprobs and huge n took SGLang 0.5.23's whole server down; the
    plugin's request guard (longcat_sglang.request_guard) answers them, and the rest of the table."""
    bad_requests.check(server.url, case, "sglang", prompts[0], greedy_before)


def _kv_cache_usage(url: str) -> tuple[float, int, int]:
    """SGLang's own figures, from /v1/loads (no --enable-metrics needed): token usage of the KV pool
    (prefix-cache tokens no request holds are not counted), tokens in use, running requests."""
    load = requests.get(url + "/v1/loads", timeout=30).json()["loads"][0]
    return load["token_usage"], load["num_used_tokens"], load["num_running_reqs"]


def test_clients_closing_streams_mid_way(server, prompts):
    aborts.check(server.url, prompts, lambda: _kv_cache_usage(server.url))


def test_zero_expert_metrics_match_reference(server, tiny_ckpt):
    """/metrics counts every forwarded token's routed slots once (prefill and decode), as the reference."""
    tok = AutoTokenizer.from_pretrained(tiny_ckpt)

    def generate(prompt):
        ids = tok.encode(prompt)
        return ids, server.new_ids(ids, 6)
    served, expected, _ = metrics_check.served_vs_reference(server.url, MODEL, tiny_ckpt, generate)
    assert served == expected
    sample = metrics_check.scrape(server.url, MODEL)
    assert 0 < sample["longcat_zero_expert_slot_ratio"] < 1
