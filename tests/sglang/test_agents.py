"""SGLang's OpenAI server with our tool-call and reasoning parsers, on scripted checkpoints whose greedy
output is a think block, text and two tool calls. One server, shared by the module's tests, on
Flash-Thinking-2601's XML calls (``--tool-call-parser longcat_xml``; SGLang has no LongCat parser of
its own); LONGCAT_AGENT_TESTS=all adds one on Flash-Thinking's JSON calls (served in the vLLM tests)."""


import pytest
from openai import OpenAI

from longcat_common.tiny import write_checkpoint
from longcat_sglang.parsers import IN_USE
from tests import agents
from tests.sglang.server import sglang_server


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
    agents.check_tool_result_turn(served[1], served[3], served[0])
