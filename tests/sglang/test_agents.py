"""SGLang's OpenAI server with our tool-call and reasoning parsers, on scripted checkpoints whose greedy
output is a think block, text and two tool calls. One server, shared by the module's tests, on
Flash-Thinking-2601's XML calls (``--tool-call-parser longcat_xml``; SGLang has no LongCat parser of
its own); LONGCAT_AGENT_TESTS=all adds one on Flash-Thinking's JSON calls (served in the vLLM tests)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from openai import OpenAI
from transformers import AutoTokenizer

from longcat_common.tiny import write_checkpoint
from longcat_common.tiny_agent import SCRIPT_TOOLS
from longcat_sglang.parsers import IN_USE
from tests import agents
from tests.sglang.server import sglang_server

AGENT_LOOP = Path(__file__).parents[2] / "examples" / "agent_loop.py"


@pytest.fixture(scope="module", params=agents.FLAVOURS_SERVED["sglang"])
def served(request, tmp_path_factory):
    flavour = request.param
    ckpt = write_checkpoint(tmp_path_factory.mktemp(f"agent-{flavour}"), flavour=flavour, scripted=True)
    log = tmp_path_factory.mktemp("sglang-agents") / "server.log"
    args = ["--served-model-name", agents.MODEL, "--tool-call-parser", agents.TOOL_PARSER[flavour],
            "--reasoning-parser", "longcat"]
    with sglang_server(ckpt, log, args) as server:
        yield flavour, OpenAI(base_url=server.url + "/v1", api_key="none"), server, ckpt


def test_our_parsers_serve(served):
    flavour, client, server = served[:3]
    agents.ask(client)
    for parser in (f"tool parser {agents.TOOL_PARSER[flavour]}", "reasoning parser longcat"):
        assert IN_USE.format(parser) in server.log()


def test_tool_calls_and_reasoning(served):
    flavour, client = served[:2]
    r = agents.ask(client)
    assert r.choices[0].finish_reason == "tool_calls"
    assert agents.summary(r) == agents.expected(flavour)


def test_streaming_equals_whole(served):
    flavour, client = served[:2]
    assert agents.streamed(client) == agents.expected(flavour)


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_tool_choice_required_and_named(served, choice):
    flavour, client = served[:2]
    assert agents.whole(client, tool_choice=choice) == agents.expected(flavour)


def test_tool_results_rendered_back_through_the_template(served):
    flavour, client, _, ckpt = served
    first = agents.ask(client).choices[0].message
    messages = agents.with_tool_results(first.tool_calls)
    r = agents.ask(client, messages=messages)
    local = json.loads(json.dumps(messages))  # transformers renders arguments given as objects
    for call in local[2]["tool_calls"]:
        call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    tok = AutoTokenizer.from_pretrained(ckpt)
    text = tok.apply_chat_template(local, tools=SCRIPT_TOOLS, tokenize=False, add_generation_prompt=True)
    name = "get_weather\n" if flavour == "2601" else ""
    assert f'<longcat_tool_response>{name}{{"forecast": ["sun", "rain", "sun"]}}</longcat_tool_response>' in text
    assert r.usage.prompt_tokens == len(tok(text, add_special_tokens=False).input_ids)
    assert r.choices[0].message.tool_calls  # the scripted model calls again


def test_agent_loop_example(served):
    out = subprocess.run([sys.executable, str(AGENT_LOOP), served[2].url + "/v1", "--max-steps", "2"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'get_weather({"city": "Paris", "days": 3})' in out.stdout, out.stdout
