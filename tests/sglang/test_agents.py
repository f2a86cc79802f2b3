"""SGLang's OpenAI server with our tool-call and reasoning parsers, on scripted checkpoints whose greedy
output is a think block, text and two tool calls. One server per format, shared by the module's tests:
Flash-Thinking-2601's XML calls (``--tool-call-parser longcat_xml``, on 2601's LongcatCausalLM / YaRN
config) and Flash-Thinking's JSON calls (``--tool-call-parser longcat``); SGLang has no LongCat parser of
its own."""


import pytest
from openai import OpenAI

from longcat_common.tiny import write_checkpoint
from longcat_sglang.parsers import IN_USE
from tests import agents
from tests.agents import (  # noqa: F401 (engine-independent tests, collected here with this module's server)
    test_streaming_equals_whole, test_tool_calls_and_reasoning, test_tool_choice_required_and_named,
    test_tool_results_rendered_back_through_the_template)
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
