"""Engine-free checks of an agent turn served from a scripted checkpoint (longcat_common.testing.agent),
shared by the vLLM and SGLang parser tests: what the openai client gets, whole and streamed."""

import json

import pytest

from transformers import PreTrainedTokenizerFast  # AutoTokenizer reads the 2601-shaped config.json

from longcat_common.testing.agent import SCRIPT_CALLS, SCRIPT_TOOLS, SCRIPTS

MODEL = "longcat-agent"
MESSAGES = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris for 3 days, and the time in UTC?"}]
TOOL_PARSER = {"chat": "longcat", "thinking": "longcat", "2601": "longcat_xml", "lite": "longcat_xml"}
REASONING_PARSER = {"chat": None, "thinking": "longcat", "2601": "longcat", "lite": None}  # Flash-Lite: non-thinking
PRESET = {"lite": "lite"}  # the generator preset of a flavour's checkpoint (others: tiny)
# one server per flavour and engine: both call formats (JSON: Thinking, XML: 2601) in both engines, and
# Flash-Lite (XML calls, no reasoning parser) served by our n-gram class
FLAVOURS_SERVED = {"vllm": ["thinking", "2601", "lite"], "sglang": ["2601", "thinking", "lite"]}
# the server whose checkpoint's routers are made to favour zero experts for the metrics test (the
# reference forward has no YaRN, which 2601's config turns on)
METRICS_FLAVOUR = "thinking"
RESULTS = {"get_weather": {"forecast": ["sun", "rain", "sun"]}, "get_time": "12:00"}


def expected(flavour: str) -> tuple[str | None, str, list]:
    """(reasoning, content, [(name, arguments)]) of the flavour's scripted turn."""
    reasoning = None if REASONING_PARSER[flavour] is None else SCRIPTS["2601"][0]
    return reasoning, "Let me check.\n", [(name, args) for name, args in SCRIPT_CALLS]


def _reasoning(obj) -> str | None:
    """vLLM names the field ``reasoning``, SGLang ``reasoning_content``."""
    return getattr(obj, "reasoning_content", None) or getattr(obj, "reasoning", None)


def ask(client, messages=MESSAGES, **kw):
    return client.chat.completions.create(model=MODEL, messages=messages, tools=SCRIPT_TOOLS, temperature=0,
                                          max_tokens=64, **kw)


def summary(response) -> tuple[str | None, str | None, list]:
    """(reasoning, content, [(name, arguments)]) of a whole response."""
    message = response.choices[0].message
    calls = [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]
    assert all(c.id and c.type == "function" for c in message.tool_calls)
    return _reasoning(message), message.content, calls


def whole(client, **kw) -> tuple[str | None, str | None, list]:
    return summary(ask(client, **kw))


def streamed(client, **kw) -> tuple[str | None, str | None, list]:
    reasoning, content, calls = "", "", {}
    for chunk in ask(client, stream=True, **kw):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        reasoning += _reasoning(delta) or ""
        content += delta.content or ""
        for call in delta.tool_calls or []:
            name, args = calls.get(call.index, ("", ""))
            calls[call.index] = (name + (call.function.name or ""), args + (call.function.arguments or ""))
    return reasoning or None, content or None, [(n, json.loads(a)) for _, (n, a) in sorted(calls.items())]


def with_tool_results(calls) -> list[dict]:
    """MESSAGES, the assistant turn that made ``calls`` (OpenAI message objects) and their results."""
    assistant = {"role": "assistant", "content": "Let me check.\n",
                 "tool_calls": [{"id": c.id, "type": "function",
                                 "function": {"name": c.function.name, "arguments": c.function.arguments}}
                                for c in calls]}
    results = [{"role": "tool", "tool_call_id": c.id, "content": json.dumps(RESULTS[c.function.name])}
               for c in calls]
    return MESSAGES + [assistant] + results


def check_tool_result_turn(client, ckpt, flavour: str) -> None:
    """A turn after tool results: the server renders them through the checkpoint's template exactly as
    transformers does (same prompt length), and the scripted model calls again."""
    first = ask(client).choices[0].message
    messages = with_tool_results(first.tool_calls)
    r = ask(client, messages=messages)
    local = json.loads(json.dumps(messages))  # transformers renders arguments given as objects
    for call in local[2]["tool_calls"]:
        call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    tok = PreTrainedTokenizerFast.from_pretrained(ckpt)
    text = tok.apply_chat_template(local, tools=SCRIPT_TOOLS, tokenize=False, add_generation_prompt=True)
    name = "get_weather\n" if TOOL_PARSER[flavour] == "longcat_xml" else ""
    assert f'<longcat_tool_response>{name}{{"forecast": ["sun", "rain", "sun"]}}</longcat_tool_response>' in text
    assert r.usage.prompt_tokens == len(tok(text, add_special_tokens=False).input_ids)
    assert r.choices[0].message.tool_calls


# Engine-independent tests: tests/vllm/test_agents.py and tests/sglang/test_agents.py import them, and each
# provides the ``served`` fixture (flavour, openai client, log or server, checkpoint, ...).

def test_tool_calls_and_reasoning(served):
    flavour, client = served[:2]
    r = ask(client)
    assert r.choices[0].finish_reason == "tool_calls"
    assert summary(r) == expected(flavour)


def test_streaming_equals_whole(served):
    flavour, client = served[:2]
    assert streamed(client) == expected(flavour)


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])

def test_tool_choice_required_and_named(served, choice):
    """Both engines parse the model's own calls for these parsers (vLLM would force a JSON array otherwise)."""
    flavour, client = served[:2]
    assert whole(client, tool_choice=choice) == expected(flavour)


def test_tool_results_rendered_back_through_the_template(served):
    check_tool_result_turn(served[1], served[3], served[0])
