"""A model that is not LongCat is served exactly as without this package (docs/vllm.md, "Other models").

Two servers of the 2-layer Llama of tests/other_model.py, float32: one with the package's plugins loading
as installed, one with them switched off (``VLLM_PLUGINS`` naming every other plugin, conftest.plugins_off_env).
Both with vLLM's Hermes tool parser. Every check reads those two servers.
"""

import os
import re
import sys

import pytest
import requests

from longcat_common import __version__
from tests.other_model import CHAT, TOOLS, write_llama
from tests.server import free_port, running_servers

from .conftest import plugins_off_env

MODEL = "llama-tiny"
PROMPTS = [[1, 17, 200, 45, 99, 300, 12, 7, 650, 88, 23, 400], [1, 5, 9, 33, 77, 100, 4, 8]]
# and a role no chat API names: vLLM renders every role as the model's template says
MESSAGES = [*CHAT, {"role": "critic", "content": "Be precise."}]
REGISTERED = (f"longcat-flash-plugins {__version__}: LongcatFlashForCausalLM, LongcatCausalLM, "
              "LongcatFlashNgramForCausalLM, LongCatFlashMTPModel registered for vLLM")
# vLLM's own listing of the entry points it finds (not our output)
VLLM_PLUGIN_LISTING = re.compile(r"- longcat_flash\w* -> longcat_vllm\.")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """{"installed" / "off": (base URL, server log path, the server's TMPDIR)}, started at once, one core each."""
    root = tmp_path_factory.mktemp("other-model")
    llama = write_llama(root / "llama")
    runs = {"installed": {}, "off": plugins_off_env()}
    specs = [_server_spec(llama, root / name, core, env) for core, (name, env) in enumerate(runs.items())]
    with running_servers(specs) as bases:
        yield {name: (base, log, log.parent / "tmp") for name, base, (_, _, log, _) in zip(runs, bases, specs)}


def _server_spec(model, directory, core, env):
    """(command, port, log path, env) of a server with its own TMPDIR, directory / "tmp"."""
    tmp = directory / "tmp"
    tmp.mkdir(parents=True)
    port, log = free_port(), directory / "server.log"
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--host", "127.0.0.1",
           "--port", str(port), "--dtype", "float32", "--max-model-len", "512", "--max-num-seqs", "4",
           "--kv-cache-memory-bytes", str(1 << 26), "--served-model-name", MODEL,
           "--enable-auto-tool-choice", "--tool-call-parser", "hermes"]
    env = {"VLLM_CPU_OMP_THREADS_BIND": str(core % (os.cpu_count() or 1)), "VLLM_LOGGING_LEVEL": "INFO",
           "TMPDIR": str(tmp), **env}
    return cmd, port, log, env


def both(servers, path, body=None):
    """The JSON answer of each server (GET without a body)."""
    answers = []
    for name in ("installed", "off"):
        base = servers[name][0]
        r = requests.post(base + path, json=body, timeout=120) if body else requests.get(base + path, timeout=60)
        assert r.status_code == 200, r.text
        answers.append(r.json() if body else r.text)
    return answers


def longcat_lines(log_path) -> list[str]:
    """Log lines that mention LongCat, once the environment's path (which may hold our name) is cut out."""
    lines = (line.replace(sys.prefix, "") for line in log_path.read_text().splitlines())
    return [line for line in lines if "longcat" in line.lower()]


def test_plugin_loaded_in_the_installed_server_only(servers):
    assert REGISTERED in "\n".join(longcat_lines(servers["installed"][1]))
    assert longcat_lines(servers["off"][1]) == []


def test_no_longcat_line_but_the_registration(servers):
    """Our log lines are the INFO registration lines, which serve nothing (no "served by", warning,
    metrics or counting line); nothing else mentions LongCat but vLLM's own list of entry points."""
    lines = longcat_lines(servers["installed"][1])
    ours = [line for line in lines if "] longcat-flash-plugins" in line]
    assert ours and all(" INFO " in line and " registered" in line for line in ours)
    assert not any("serv" in line for line in ours)
    assert [line for line in lines if line not in ours and not VLLM_PLUGIN_LISTING.search(line)] == []


def test_same_greedy_tokens_and_prompt_logprobs(servers):
    body = {"model": MODEL, "prompt": PROMPTS, "max_tokens": 8, "temperature": 0, "logprobs": 1,
            "prompt_logprobs": 1, "ignore_eos": True, "return_token_ids": True}
    installed, off = both(servers, "/v1/completions", body)
    for a, b in zip(installed["choices"], off["choices"]):
        assert a["token_ids"] == b["token_ids"] and len(a["token_ids"]) == 8
        assert a["text"] == b["text"]
        prompt_a, prompt_b = a["prompt_logprobs"][1:], b["prompt_logprobs"][1:]
        assert len(prompt_a) == len(prompt_b) > 0
        for step_a, step_b in zip(prompt_a, prompt_b):
            assert step_a.keys() == step_b.keys()
            for token in step_a:
                assert abs(step_a[token]["logprob"] - step_b[token]["logprob"]) <= 1e-6
        for la, lb in zip(a["logprobs"]["token_logprobs"], b["logprobs"]["token_logprobs"]):
            assert abs(la - lb) <= 1e-6


def test_same_rendered_chat_prompt(servers):
    body = {"model": MODEL, "messages": MESSAGES, "tools": TOOLS, "add_generation_prompt": True,
            "return_token_strs": True}
    installed, off = both(servers, "/tokenize", body)
    assert installed == off
    text = both(servers, "/detokenize", {"model": MODEL, "tokens": installed["tokens"]})[0]["prompt"]
    for role in ("tool", "critic"):  # the generic template renders every role; LongCat's refuses these
        assert f"<|im_start|>{role}\n" in text


def test_same_tool_parser_behaviour(servers):
    body = {"model": MODEL, "messages": MESSAGES[:3], "tools": TOOLS, "tool_choice": "auto", "max_tokens": 12,
            "temperature": 0}
    installed, off = both(servers, "/v1/chat/completions", body)
    pick = lambda r: [(c["message"]["content"], c["message"].get("tool_calls"), c["finish_reason"])  # noqa: E731
                      for c in r["choices"]]
    assert pick(installed) == pick(off)


def test_same_metrics_and_no_longcat_series(servers):
    both(servers, "/v1/completions", {"model": MODEL, "prompt": PROMPTS[0], "max_tokens": 2})
    installed, off = both(servers, "/metrics")
    names = [{line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
             for text in (installed, off)]
    assert names[0] == names[1]
    assert not any(name.startswith("longcat_") for name in names[0])


def test_no_metrics_directory(servers):
    """Our workers' count directory is made for LongCat only (longcat_vllm/metrics.py)."""
    for name in ("installed", "off"):
        assert list(servers[name][2].glob("longcat-metrics-*")) == []
