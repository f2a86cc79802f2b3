"""Streaming requests of mixed lengths, half closed by the client mid-stream, against an OpenAI server.

Shared by both engines' server tests: the server must stay up, the KV cache usage it reports must go
back to its idle value, and the requests that ran to the end must equal the same requests sent one at
a time (a float32 server: no batch-shape near-ties).
"""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import requests

MODEL = "longcat-tiny"
REQUESTS = 64
CLOSE_AFTER = 1  # chunks read before an aborting client closes its connection
ABORTED_EXTRA = 40  # tokens more for the aborting requests: a busy server puts several tokens in one chunk
DISTINCT = 8  # completed requests are 4 copies each of 8 (prompt, length) pairs: 8 one-at-a-time runs


def plan(prompts: list[str]) -> list[tuple[str, int, bool]]:
    """(prompt, max_tokens, abort) per request: prompt and output lengths vary, every other request aborts."""
    plan_ = []
    for i in range(REQUESTS):
        k = (i // 2) % DISTINCT
        abort = i % 2 == 1
        plan_.append((f"{prompts[k % len(prompts)]} ({k})", (4, 8, 12, 16)[k % 4] + ABORTED_EXTRA * abort, abort))
    return plan_


def stream(base_url: str, prompt: str, max_tokens: int, abort: bool) -> str | None:
    """The streamed text, or None after closing the connection CLOSE_AFTER chunks in."""
    body = {"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    with requests.Session() as session, session.post(base_url + "/v1/completions", json=body, stream=True,
                                                     timeout=300) as r:
        r.raise_for_status()
        pieces = []
        for line in r.iter_lines():
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            choices = json.loads(line[len(b"data: "):])["choices"]
            pieces += [c["text"] for c in choices]
            if abort and len(pieces) >= CLOSE_AFTER:
                r.raw.close()  # drop the socket: the server sees the client go away
                return None
        return "".join(pieces)


def run(base_url: str, prompts: list[str], read_usage) -> tuple[list[str | None], list[str], object]:
    """(every request's text run concurrently, None where it aborted; each completed one's text when
    sent alone; the highest ``read_usage()`` seen while the concurrent requests ran)."""
    requests_ = plan(prompts)
    with ThreadPoolExecutor(REQUESTS + 1) as pool:
        futures = [pool.submit(stream, base_url, *r) for r in requests_]
        peak = read_usage()
        while not all(f.done() for f in futures):
            peak = max(peak, read_usage())
            time.sleep(0.2)
        concurrent = [f.result() for f in futures]
    alone = {(p, n): stream(base_url, p, n, False) for p, n, abort in requests_ if not abort}
    return concurrent, [alone[p, n] for p, n, abort in requests_ if not abort], peak


def check(base_url: str, prompts: list[str], read_usage) -> None:
    idle = read_usage()
    concurrent, one_by_one, peak = run(base_url, prompts, read_usage)
    aborted = [t is None for t in concurrent]
    assert aborted == [abort for _, _, abort in plan(prompts)], f"closed mid-stream: {aborted}"
    assert peak > idle, "the KV cache usage never moved: not the figure the engine reports"
    assert wait_for(read_usage, idle) == idle
    assert requests.get(base_url + "/health", timeout=30).status_code == 200
    assert [t for t in concurrent if t is not None] == one_by_one


def wait_for(read, idle, timeout: float = 60) -> object:
    """Polls ``read()`` until it equals ``idle``; returns the last value read."""
    deadline = time.monotonic() + timeout
    while (value := read()) != idle and time.monotonic() < deadline:
        time.sleep(0.5)
    return value
