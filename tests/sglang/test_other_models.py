"""A model we do not serve is served exactly as without the plugin (docs/sglang.md, "Other models").

The 2-layer Llama of tests/other_model.py, served by SGLang with our plugin installed and with it switched
off (``SGLANG_PLUGINS`` naming another plugin: SGLang then loads only the named ones). Each server starts
once; the same requests go to both and every answer is recorded (``observe``), then compared: greedy tokens,
prompt log-probs, the rendered chat prompt (roles LongCat's template refuses included), the tool-call parser
(``--tool-call-parser qwen25``), requests the plugin refuses for LongCat (n above 128, an unknown model
name), the /metrics series, and the log.
"""

import json
import os
import re

import pytest
import requests

from longcat_common.testing.tokenizer import build_tokenizer
from tests.conftest import PROMPTS
from tests.other_model import CHAT, TOOLS, write_llama
from tests.sglang.server import any_model_servers

ARGS = ["--dtype", "float32", "--tool-call-parser", "qwen25", "--enable-metrics", "--model-impl", "transformers"]
PLUGIN_OFF = {"SGLANG_PLUGINS": "none"}  # a whitelist naming no installed plugin: ours is not loaded
GREEDY_TOKENS = 12
QWEN25_CALL = 'Checking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
LONGCAT_XML_CALL = ("Checking.\n<longcat_tool_call>get_weather\n<longcat_arg_key>city</longcat_arg_key>\n"
                    "<longcat_arg_value>Paris</longcat_arg_value>\n</longcat_tool_call>")
OURS_LINE = re.compile(r"^(\[[^]]*\] )?longcat-flash-plugins[ :]")  # every message our package logs starts so


def _post(url: str, path: str, body: dict) -> tuple[int, dict | str]:
    r = requests.post(url + path, json=body, timeout=300)
    return r.status_code, r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text


def _chat(url: str, **body) -> tuple[int, dict]:
    status, out = _post(url, "/v1/chat/completions", {"model": "default", "temperature": 0.0, "max_tokens": 6,
                                                      **body})
    if status == 200:
        for volatile in ("id", "created", "usage"):
            out.pop(volatile, None)
        out["choices"][0].pop("meta_info", None)
    return status, out


def observe(server) -> dict:
    """The same requests for either server; everything answered that must not depend on the plugin."""
    tok = build_tokenizer()
    ids = [tok.encode(p).ids for p in PROMPTS]
    url = server.url
    metrics = requests.get(url + "/metrics", timeout=30).text
    return {
        "greedy": [server.new_ids(i, GREEDY_TOKENS) for i in ids],
        "prompt_logprobs": [server.prompt_logprobs(i)[1:] for i in ids],
        "chat": _chat(url, messages=CHAT, return_prompt_token_ids=True),
        "tools": _chat(url, messages=CHAT[2:3], tools=TOOLS, tool_choice="auto"),
        "parse_qwen25": _post(url, "/parse_function_call", {"text": QWEN25_CALL, "tool_call_parser": "qwen25",
                                                            "tools": TOOLS}),
        # before the one request that uses our parser (which logs that it does)
        "our_log_lines": [line for line in server.log().splitlines() if OURS_LINE.search(line)],
        "parse_longcat": _post(url, "/parse_function_call", {"text": LONGCAT_XML_CALL, "tool_call_parser": "longcat_xml",
                                                             "tools": TOOLS}),
        "n_130": len(_post(url, "/v1/completions", {"model": "default", "prompt": PROMPTS[0], "max_tokens": 1,
                                                    "n": 130, "temperature": 1.0})[1]["choices"]),
        "unknown_model": _chat(url, model="no-such-model", messages=CHAT[2:3])[0],
        "metric_names": sorted({line.split("{")[0].split(" ")[0] for line in metrics.splitlines()
                                if line and not line.startswith("#")}),
    }


@pytest.fixture(scope="module")
def observed(tmp_path_factory) -> dict:
    """{"installed": observations, "off": observations}: the two servers started at once, one core each."""
    model = write_llama(tmp_path_factory.mktemp("llama"))
    logs = tmp_path_factory.mktemp("logs")
    runs = {"installed": {}, "off": PLUGIN_OFF}
    with any_model_servers([(model, logs / f"{name}.log", ARGS,
                             {**env, "SGLANG_CPU_OMP_THREADS_BIND": str(core % (os.cpu_count() or 1))})
                            for core, (name, env) in enumerate(runs.items())]) as servers:
        return {name: observe(server) for name, server in zip(runs, servers)}


def test_the_plugin_loaded_only_where_installed(observed):
    """Its parser table entry: /parse_function_call knows ``longcat_xml`` with the plugin only (and parses
    with the tools SGLang passes there as msgspec structs)."""
    status, parsed = observed["installed"]["parse_longcat"]
    assert status == 200, parsed
    assert parsed["normal_text"].strip() == "Checking." and len(parsed["calls"]) == 1
    assert parsed["calls"][0]["name"] == "get_weather"
    assert json.loads(parsed["calls"][0]["parameters"]) == {"city": "Paris"}
    assert observed["off"]["parse_longcat"][0] != 200


def test_same_greedy_tokens_and_prompt_logprobs(observed):
    on, off = observed["installed"], observed["off"]
    assert on["greedy"] == off["greedy"]
    assert len(on["greedy"]) == len(PROMPTS) and all(len(t) == GREEDY_TOKENS for t in on["greedy"])
    diffs = [abs(a - b) for p, q in zip(on["prompt_logprobs"], off["prompt_logprobs"]) for a, b in zip(p, q)]
    assert len(diffs) == sum(len(p) for p in on["prompt_logprobs"]) > 100
    assert max(diffs) <= 1e-6


def test_same_chat_prompt_with_roles_longcat_refuses(observed):
    on, off = observed["installed"]["chat"], observed["off"]["chat"]
    assert on[0] == 200 and on == off
    rendered = build_tokenizer().decode(on[1]["choices"][0]["prompt_token_ids"])
    assert "developer\nAnswer in one word." in rendered and "tool\nsunny, 21 C" in rendered


def test_same_tool_parser_behaviour(observed):
    on, off = observed["installed"], observed["off"]
    assert on["tools"][0] == 200 and on["tools"] == off["tools"]
    status, parsed = on["parse_qwen25"]
    assert status == 200 and parsed["calls"][0]["name"] == "get_weather"
    assert on["parse_qwen25"] == off["parse_qwen25"]


def test_requests_refused_for_longcat_are_served_as_without_the_plugin(observed):
    for name in ("installed", "off"):
        assert observed[name]["n_130"] == 130
        assert observed[name]["unknown_model"] == 200


def test_no_longcat_metrics_and_no_longcat_log_line(observed):
    on, off = observed["installed"], observed["off"]
    assert on["metric_names"] == off["metric_names"]
    assert "sglang:prompt_tokens_total" in on["metric_names"]
    assert not [name for name in on["metric_names"] if name.startswith("longcat_")]
    assert on["our_log_lines"] == [] and off["our_log_lines"] == []
