"""Prefill-decode disaggregation on vLLM's CPU backend: a prefill server and a decode server, both ours.

vLLM's ``ExampleConnector`` (``distributed/kv_transfer/kv_connector/v1/example_connector.py``) runs on
the CPU: the prefill server writes each prompt's KV cache (MLA's latent cache, per attention layer) to a
shared directory, and the decode server, finding a file for a prompt's first whole blocks, loads them
into its paged cache instead of computing them. The test plays the proxy of vLLM's disaggregated-prefill
example: the prompt goes to the prefill server with ``max_tokens=1``, then to the decode server.

What shows that the decode server used the prefill server's cache rather than its own compute: its
zero-expert counters (docs/metrics.md) grow by exactly the routing of the positions it forwarded (the
prompt's last partial block and the decode steps), as the reference routes them with the whole prompt
as context; had it recomputed the prompt, or attended over a wrong cache, the counts would differ.
"""

import json
import random
import sys

import pytest
import requests

from tests import metrics_check, oracle
from tests.server import free_port, running_servers

from .conftest import SERVED_BY_US

BLOCK = 16
NEW_TOKENS = 8
CLEAR_MARGIN = 0.1


def _prompts(vocab: int) -> list[list[int]]:
    rng = random.Random(7)
    return [[1] + [rng.randrange(3, vocab) for _ in range(n - 1)] for n in (37, 18, 53)]


@pytest.fixture(scope="module")
def pd(tiny_ckpt, tmp_path_factory):
    """(prefill URL, decode URL, {role: log path}): two fp32 servers with the connector, one core each."""
    tmp = tmp_path_factory.mktemp("vllm-pd")
    kv = ('{"kv_connector": "ExampleConnector", "kv_role": "kv_both", '
          f'"kv_connector_extra_config": {{"shared_storage_path": "{tmp / "kv"}"}}}}')
    servers = []
    for rank, role in enumerate(("prefill", "decode")):
        port = free_port()
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_ckpt),
               "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--max-model-len", "512",
               "--block-size", str(BLOCK), "--kv-cache-memory-bytes", str(1 << 28),
               "--served-model-name", "longcat-tiny", "--kv-transfer-config", kv]
        # a metrics directory each: one inherited from the test process would make /metrics sum both servers
        (tmp / role).mkdir()
        servers.append((cmd, port, tmp / f"{role}.log",
                        {"VLLM_CPU_OMP_THREADS_BIND": str(rank), "LONGCAT_METRICS_DIR": str(tmp / role)}))
    with running_servers(servers) as (prefill, decode):
        yield prefill, decode, {role: tmp / f"{role}.log" for role in ("prefill", "decode")}


def _complete(base: str, prompt: list[int], n: int) -> dict:
    body = {"model": "longcat-tiny", "prompt": prompt, "max_tokens": n, "temperature": 0,
            "return_token_ids": True, "ignore_eos": True}
    r = requests.post(base + "/v1/completions", json=body, timeout=300)
    r.raise_for_status()
    return r.json()["choices"][0]


def test_both_sides_served_by_the_plugin(pd):
    for log in pd[2].values():
        assert SERVED_BY_US in log.read_text()


def test_split_request_equals_oracle_and_decode_side_forwards_only_the_tail(pd, tiny_ckpt):
    prefill, decode, logs = pd
    model = oracle.load_oracle(tiny_ckpt)
    prompts = _prompts(json.loads((tiny_ckpt / "config.json").read_text())["vocab_size"])
    before = metrics_check.settled_counts(decode, "longcat-tiny")
    forwarded, loaded = [], []
    for prompt in prompts:
        _complete(prefill, prompt, 1)
        got = _complete(decode, prompt, NEW_TOKENS)
        want, margins = oracle.greedy(model, prompt, NEW_TOKENS)
        clear = next((i for i, m in enumerate(margins) if m < CLEAR_MARGIN), NEW_TOKENS)
        assert clear >= 3 and got["token_ids"][:clear] == want[:clear]
        # ExampleConnector loads the whole blocks of the prompt but its last token
        loaded.append((len(prompt) - 2) // BLOCK * BLOCK)
        forwarded.append(prompt + got["token_ids"][:-1])
    assert logs["decode"].read_text().count("External Cache Hit!") >= len(prompts)
    expected = metrics_check.reference_counts(tiny_ckpt, forwarded, loaded)
    assert metrics_check.delta_reaching(decode, "longcat-tiny", before, expected) == expected
