"""vLLM's OpenAI server with our tool-call and reasoning parsers, on a scripted checkpoint whose greedy
output is a think block, text and two tool calls. One server per format, all started at once, shared by
the module's tests: Flash-Thinking's JSON calls (``--tool-call-parser longcat``, the name that replaces
vLLM's built-in parser), 2601's XML calls (``--tool-call-parser longcat_xml``, on 2601's LongcatCausalLM
/ YaRN config) and Flash-Lite's (XML calls, no think block, no reasoning parser, on our n-gram class).
examples/agent_loop.py runs against each."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from openai import OpenAI

from longcat_common.testing.tiny import write_checkpoint
from longcat_vllm.plugin import PARSERS_REGISTERED
from tests import agents, metrics_check
from tests.agents import (  # noqa: F401 (engine-independent tests, collected here with this module's server)
    test_streaming_equals_whole, test_tool_calls_and_reasoning, test_tool_choice_required_and_named,
    test_tool_results_rendered_back_through_the_template)
from tests.server import free_port, running_servers

AGENT_LOOP = Path(__file__).parents[2] / "examples" / "agent_loop.py"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Every flavour's server, started at once (start-up is mostly one core's work each): flavour -> (checkpoint,
    log, base URL, the unbiased checkpoint's copy for the metrics test or None)."""
    specs, extras = [], {}
    for i, flavour in enumerate(agents.FLAVOURS_SERVED["vllm"]):
        ckpt = write_checkpoint(tmp_path_factory.mktemp(f"agent-{flavour}"), agents.PRESET.get(flavour, "tiny"),
                                flavour=flavour, scripted=True)
        unbiased = metrics_check.favour_zero_experts(ckpt) if flavour == agents.METRICS_FLAVOUR else None
        port, log = free_port(), tmp_path_factory.mktemp("vllm-agents") / "server.log"
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(ckpt), "--host", "127.0.0.1",
               "--port", str(port), "--dtype", "float32", "--max-model-len", "2048", "--max-num-seqs", "4",
               "--kv-cache-memory-bytes", str(1 << 28), "--served-model-name", agents.MODEL,
               "--enable-auto-tool-choice", "--tool-call-parser", agents.TOOL_PARSER[flavour],
               "--enforce-eager"]  # torch.compile would add ~2 min of start-up and nothing parsers need
        if agents.REASONING_PARSER[flavour]:
            cmd += ["--reasoning-parser", agents.REASONING_PARSER[flavour]]
        specs.append((cmd, port, log, {"VLLM_CPU_OMP_THREADS_BIND": str(i % (os.cpu_count() or 1))}))
        extras[flavour] = (ckpt, log, unbiased)
    with running_servers(specs) as bases:
        yield {flavour: (ckpt, log, base, unbiased) for (flavour, (ckpt, log, unbiased)), base in zip(extras.items(), bases)}


@pytest.fixture(scope="module", params=agents.FLAVOURS_SERVED["vllm"])
def served(request, servers):
    flavour = request.param
    ckpt, log, base, unbiased = servers[flavour]
    return flavour, OpenAI(base_url=base + "/v1", api_key="none"), log, ckpt, base, unbiased


def test_our_model_and_parsers_served(served):
    text, arch = served[2].read_text(), json.loads((served[3] / "config.json").read_text())["architectures"][0]
    assert f"{arch} served by longcat_vllm" in text and PARSERS_REGISTERED in text  # 2601: LongcatCausalLM, lite: ..Ngram..


def test_agent_loop_example(served):
    out = subprocess.run([sys.executable, str(AGENT_LOOP), served[4] + "/v1", "--max-steps", "2"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'get_weather({"city": "Paris", "days": 3})' in out.stdout, out.stdout


def test_zero_expert_share_follows_the_router_bias(served):
    """/metrics on a checkpoint whose routers were made to favour zero experts (metrics_check.favour_zero_experts;
    the server runs in float32, so its routing equals the fp32 reference's)."""
    if served[-1] is None:
        pytest.skip(f"checked on the {agents.METRICS_FLAVOUR} server")
    client, ckpt, base, unbiased = served[1], *served[3:]

    def generate(prompt):
        r = client.completions.create(model=agents.MODEL, prompt=prompt, max_tokens=6, temperature=0,
                                      extra_body={"return_token_ids": True, "ignore_eos": True})
        return r.choices[0].prompt_token_ids, r.choices[0].token_ids
    metrics_check.check_share_follows_the_bias(base, agents.MODEL, ckpt, unbiased, generate)
