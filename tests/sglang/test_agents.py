"""SGLang's OpenAI server with our tool-call and reasoning parsers, on scripted checkpoints whose greedy
output is a think block, text and two tool calls. One server per format, all started at once, shared by
the module's tests: Flash-Thinking-2601's XML calls (``--tool-call-parser longcat_xml``, on 2601's
LongcatCausalLM / YaRN config), Flash-Thinking's JSON calls (``--tool-call-parser longcat``) and
Flash-Lite's (XML calls, no think block, no reasoning parser, on our n-gram class); SGLang has no
LongCat parser of its own."""

import pytest
from openai import OpenAI
from transformers import PreTrainedTokenizerFast

from longcat_common.testing.tiny import write_checkpoint
from longcat_sglang.model import ACTIVE_MESSAGE
from longcat_sglang.parsers import IN_USE
from tests import agents, metrics_check
from tests.agents import (  # noqa: F401 (engine-independent tests, collected here with this module's server)
    test_streaming_equals_whole, test_tool_calls_and_reasoning, test_tool_choice_required_and_named,
    test_tool_results_rendered_back_through_the_template)
from tests.sglang.server import SLEEP_ON_IDLE, any_model_servers


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Every flavour's server, started at once (one core each): flavour -> (server, checkpoint, the unbiased
    checkpoint's copy for the metrics test or None)."""
    specs, extras = [], {}
    for flavour in agents.FLAVOURS_SERVED["sglang"]:
        ckpt = write_checkpoint(tmp_path_factory.mktemp(f"agent-{flavour}"), agents.PRESET.get(flavour, "tiny"),
                                flavour=flavour, scripted=True)
        unbiased = metrics_check.favour_zero_experts(ckpt) if flavour == agents.METRICS_FLAVOUR else None
        log = tmp_path_factory.mktemp("sglang-agents") / "server.log"
        args = ["--served-model-name", agents.MODEL, "--tool-call-parser", agents.TOOL_PARSER[flavour],
                "--enable-metrics", "--dtype", "float32", *SLEEP_ON_IDLE]
        if agents.REASONING_PARSER[flavour]:
            args += ["--reasoning-parser", agents.REASONING_PARSER[flavour]]
        specs.append((ckpt, log, args, None))
        extras[flavour] = (ckpt, unbiased)
    with any_model_servers(specs) as started:
        for flavour, server in zip(extras, started):
            assert ACTIVE_MESSAGE in server.log(), f"{flavour}: SGLang did not build longcat_sglang's class"
        yield {flavour: (server, *extras[flavour]) for flavour, server in zip(extras, started)}


@pytest.fixture(scope="module", params=agents.FLAVOURS_SERVED["sglang"])
def served(request, servers):
    flavour = request.param
    server, ckpt, unbiased = servers[flavour]
    return flavour, OpenAI(base_url=server.url + "/v1", api_key="none"), server, ckpt, unbiased


def test_our_parsers_serve(served):
    flavour, client, server = served[:3]
    agents.ask(client)
    reasoning = agents.REASONING_PARSER[flavour]
    for parser in (f"tool parser {agents.TOOL_PARSER[flavour]}", *([f"reasoning parser {reasoning}"] * bool(reasoning))):
        assert IN_USE.format(parser) in server.log()


def test_zero_expert_share_follows_the_router_bias(served):
    """/metrics on a checkpoint whose routers were made to favour zero experts (metrics_check.favour_zero_experts;
    the server runs in float32, so its routing equals the fp32 reference's)."""
    if served[-1] is None:
        pytest.skip(f"checked on the {agents.METRICS_FLAVOUR} server")
    server, ckpt, unbiased = served[2:]
    tok = PreTrainedTokenizerFast.from_pretrained(ckpt)

    def generate(prompt):
        ids = tok.encode(prompt)
        return ids, server.new_ids(ids, 6)
    metrics_check.check_share_follows_the_bias(server.url, agents.MODEL, ckpt, unbiased, generate)
