"""Bad requests a LongCat server must answer with a 4xx naming the problem, and keep serving after.

One table for both engines' OpenAI servers (the tiny checkpoint: vocabulary 1024, served as MODEL).
Each case: the endpoint, the body (a str is sent as is: malformed JSON), and per engine the status and a
piece of the message it must carry. "plugin" marks the cases our plugin answers (the engine alone served
them with 200, or took the whole server down: SGLang on ids past the vocabulary, huge logprobs, huge n).
"""

from dataclasses import dataclass

import pytest
import requests

MODEL = "longcat-tiny"
VOCAB = 1024
TOO_LONG = 5000  # tokens: past vLLM's --max-model-len 512 and SGLang's context (4096, the config's)


@dataclass(frozen=True)
class BadRequest:
    path: str
    body: dict | str
    vllm: tuple[int, str]
    sglang: tuple[int, str]


def _completion(**fields) -> dict:
    return {"model": MODEL, "prompt": "Hello there", "max_tokens": 4, "temperature": 0, **fields}


def _chat(**fields) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "temperature": 0,
            **fields}


C, H = "/v1/completions", "/v1/chat/completions"
ROLE = "LongCat-Flash's chat template renders only"
CASES = {
    "empty-prompt": BadRequest(C, _completion(prompt=""), (400, "prompt"), (400, "Prompt cannot be empty")),
    "empty-messages": BadRequest(H, _chat(messages=[]), (400, "empty conversation"),
                                 (400, "Messages cannot be empty")),
    "prompt-past-context": BadRequest(C, _completion(prompt=[5] * TOO_LONG), (400, "maximum context length"),
                                      (400, "longer than the model's context length")),
    "max-tokens-0": BadRequest(C, _completion(max_tokens=0), (400, "max_tokens"), (400, "max_tokens")),
    "max-tokens-negative": BadRequest(C, _completion(max_tokens=-1), (400, "max_tokens"), (400, "max_tokens")),
    "max-tokens-past-context": BadRequest(C, _completion(max_tokens=100000), (400, "max_tokens"),
                                          (400, "maximum context length")),
    "id-past-vocab": BadRequest(C, _completion(prompt=[1, VOCAB, 5]), (400, "out of vocabulary"),
                                (400, "prompt token id 1024 is outside the vocabulary")),  # plugin
    "negative-id": BadRequest(C, _completion(prompt=[1, -3, 5]), (400, "greater than or equal to 0"),
                              (400, "prompt token id -3 is outside the vocabulary")),  # plugin
    "logprobs-negative": BadRequest(C, _completion(logprobs=-1), (400, "logprobs"),
                                    (400, "top_logprobs_num")),  # plugin
    "logprobs-huge": BadRequest(C, _completion(logprobs=100000), (400, "logprobs"),
                                (400, "top_logprobs_num")),  # plugin
    "chat-top-logprobs-negative": BadRequest(H, _chat(logprobs=True, top_logprobs=-1), (400, "logprobs"),
                                             (400, "top_logprobs_num")),  # plugin
    "chat-top-logprobs-huge": BadRequest(H, _chat(logprobs=True, top_logprobs=100000), (400, "logprobs"),
                                         (400, "top_logprobs_num")),  # plugin
    "n-0": BadRequest(C, _completion(n=0), (400, "n must be at least 1"), (400, "n (parallel samples) 0")),
    "n-negative": BadRequest(C, _completion(n=-1), (400, "n must be at least 1"),
                             (400, "n (parallel samples) -1")),  # plugin
    "n-huge": BadRequest(C, _completion(n=100000), (400, "n must be at most"),
                         (400, "n (parallel samples) 100000")),  # plugin
    "unknown-model": BadRequest(C, _completion(model="nope"), (404, "`nope` does not exist"),
                                (404, "`nope` does not exist")),  # plugin (SGLang)
    "malformed-json": BadRequest(C, '{"model": "longcat-tiny", "prompt": ', (400, "JSON"), (400, "JSON")),
    "unknown-role": BadRequest(H, _chat(messages=[{"role": "wizard", "content": "Hi"}]), (400, ROLE),
                               (400, "'wizard'")),  # plugin (vLLM); SGLang's own request model refuses it
    "role-the-template-drops": BadRequest(H, _chat(messages=[{"role": "function", "content": "Hi"},
                                                             {"role": "user", "content": "Hi"}]),
                                          (400, "'function'"), (400, ROLE)),  # plugin (SGLang)
    "logit-bias-past-vocab": BadRequest(C, _completion(logit_bias={str(VOCAB + 5): 5}), (400, "logit_bias"),
                                        (400, "logit_bias")),
    "top-p-0": BadRequest(C, _completion(top_p=0), (400, "top_p"), (400, "top_p")),
    "temperature-negative": BadRequest(C, _completion(temperature=-1), (400, "temperature"),
                                       (400, "temperature")),
    "min-tokens-past-max": BadRequest(C, _completion(min_tokens=100000), (400, "min_tokens"),
                                      (400, "min_new_tokens")),
    "repetition-penalty-0": BadRequest(C, _completion(repetition_penalty=0), (400, "repetition_penalty"),
                                       (400, "repetition_penalty")),
}


def cases() -> list:
    return [pytest.param(case, id=name) for name, case in CASES.items()]


def send(base_url: str, case: BadRequest) -> requests.Response:
    if isinstance(case.body, str):
        return requests.post(base_url + case.path, data=case.body, headers={"Content-Type": "application/json"},
                             timeout=120)
    return requests.post(base_url + case.path, json=case.body, timeout=120)


def greedy_text(base_url: str, prompt: str) -> str:
    r = requests.post(base_url + C, json=_completion(prompt=prompt), timeout=120)
    r.raise_for_status()
    return r.json()["choices"][0]["text"]


def check(base_url: str, case: BadRequest, engine: str, prompt: str, greedy_before: str) -> None:
    """The answer and message, then: the server is healthy and gives the same greedy text as before."""
    status, message = getattr(case, engine)
    r = send(base_url, case)
    assert r.status_code == status and message in r.text, (r.status_code, r.text[:2000])
    assert requests.get(base_url + "/health", timeout=30).status_code == 200
    assert greedy_text(base_url, prompt) == greedy_before
