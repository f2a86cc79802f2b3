"""The engine-free LongCat parsers: tool calls in both formats and the think block, whole-text and
streamed (split at every character boundary, and one character at a time)."""

import pytest

from longcat_common.reasoning import ReasoningStream, Split, split_reasoning
from longcat_common.tool_calls import Parsed, ToolCall, ToolCallStream, param_types, split_tool_calls

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "days": {"type": "integer"}, "units": {"type": "string"},
        "detail": {"type": "object"}}}}},
    {"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {
        "a": {"type": "number"}, "b": {"type": "number"}}}}},
]

JSON_TWO_CALLS = ('Let me look.\n<longcat_tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}\n'
                  '</longcat_tool_call>\n<longcat_tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2.5}}\n'
                  '</longcat_tool_call>')
XML_TWO_CALLS = ('Let me look.\n<longcat_tool_call>get_weather\n<longcat_arg_key>city</longcat_arg_key>\n'
                 '<longcat_arg_value>Paris</longcat_arg_value>\n<longcat_arg_key>days</longcat_arg_key>\n'
                 '<longcat_arg_value>3</longcat_arg_value>\n<longcat_arg_key>units</longcat_arg_key>\n'
                 '<longcat_arg_value>42</longcat_arg_value>\n<longcat_arg_key>detail</longcat_arg_key>\n'
                 '<longcat_arg_value>{"hourly": true}</longcat_arg_value>\n</longcat_tool_call>'
                 '<longcat_tool_call>add\n<longcat_arg_key>a</longcat_arg_key>\n<longcat_arg_value>1</longcat_arg_value>\n'
                 '<longcat_arg_key>b</longcat_arg_key>\n<longcat_arg_value>2.5</longcat_arg_value>\n'
                 '</longcat_tool_call>')
WEATHER = ToolCall("get_weather", {"city": "Paris", "days": 3})
ADD = ToolCall("add", {"a": 1, "b": 2.5})

CASES = [  # (format, text, expected)
    ("longcat", JSON_TWO_CALLS, Parsed("Let me look.\n", [WEATHER, ADD])),
    ("longcat_xml", XML_TWO_CALLS, Parsed("Let me look.\n", [
        ToolCall("get_weather", {"city": "Paris", "days": 3, "units": "42", "detail": {"hourly": True}}), ADD])),
    ("longcat", "no calls at all < > </longcat_tool", Parsed("no calls at all < > </longcat_tool", [])),
    ("longcat", JSON_TWO_CALLS + "\n\nDone.", Parsed("Let me look.\nDone.", [WEATHER, ADD])),
    # malformed bodies stay content, as written; the good call next to them still parses
    ("longcat", '<longcat_tool_call>{"name": "add", "arguments": {"a": 1,}}</longcat_tool_call>ok',
     Parsed('<longcat_tool_call>{"name": "add", "arguments": {"a": 1,}}</longcat_tool_call>ok', [])),
    ("longcat", '<longcat_tool_call>[1, 2]</longcat_tool_call>'
                '<longcat_tool_call>{"name": "add", "arguments": "{\\"a\\": 1}"}</longcat_tool_call>',
     Parsed('<longcat_tool_call>[1, 2]</longcat_tool_call>', [ToolCall("add", {"a": 1})])),
    ("longcat_xml", "<longcat_tool_call>add\n<longcat_arg_key>a</longcat_arg_key>oops</longcat_tool_call>",
     Parsed("<longcat_tool_call>add\n<longcat_arg_key>a</longcat_arg_key>oops</longcat_tool_call>", [])),
    ("longcat_xml", "<longcat_tool_call>two words\n</longcat_tool_call>",
     Parsed("<longcat_tool_call>two words\n</longcat_tool_call>", [])),
    # a tool without arguments; a string value kept exactly (newlines, JSON-looking text); an undeclared tool
    ("longcat_xml", "<longcat_tool_call>now\n</longcat_tool_call>", Parsed("", [ToolCall("now", {})])),
    ("longcat_xml", "<longcat_tool_call>get_weather\n<longcat_arg_key>city</longcat_arg_key>\n"
                    "<longcat_arg_value> New\nYork [1]</longcat_arg_value>\n</longcat_tool_call>",
     Parsed("", [ToolCall("get_weather", {"city": " New\nYork [1]"})])),
    ("longcat_xml", "<longcat_tool_call>other\n<longcat_arg_key>x</longcat_arg_key>\n"
                    "<longcat_arg_value>[1, 2]</longcat_arg_value>\n<longcat_arg_key>y</longcat_arg_key>\n"
                    "<longcat_arg_value>not json</longcat_arg_value></longcat_tool_call>",
     Parsed("", [ToolCall("other", {"x": [1, 2], "y": "not json"})])),
    # cut off inside a call: the whole text parses it as closed
    ("longcat", 'a <longcat_tool_call>\n{"name": "add", "arguments": {"a": 1}}',
     Parsed("a ", [ToolCall("add", {"a": 1})])),
]


def _streamed(stream, pieces, combine, empty):
    total = empty
    for piece in pieces:
        total = combine(total, stream.feed(piece))
    return total, stream


def _join_calls(a: Parsed, b: Parsed) -> Parsed:
    return Parsed(a.content + b.content, a.calls + b.calls)


@pytest.mark.parametrize("fmt,text,expected", CASES)
def test_whole_text(fmt, text, expected):
    assert split_tool_calls(text, fmt, TOOLS) == expected


@pytest.mark.parametrize("fmt,text,expected", CASES)
def test_streaming_split_anywhere_reassembles(fmt, text, expected):
    splits = [[text[:i], text[i:]] for i in range(len(text) + 1)] + [list(text)]
    for pieces in splits:
        got, stream = _streamed(ToolCallStream(fmt, TOOLS), pieces, _join_calls, Parsed())
        assert _join_calls(got, stream.finish()) == expected, pieces


def test_streaming_releases_calls_and_content_early():
    stream = ToolCallStream("longcat", TOOLS)
    head, tail = JSON_TWO_CALLS.split("</longcat_tool_call>\n", 1)
    assert stream.feed("Let me look.\n<longcat_") == Parsed("Let me look.\n", [])
    assert stream.feed(head[len("Let me look.\n<longcat_"):] + "</longcat_tool_call>\n") == Parsed("", [WEATHER])
    assert stream.feed(tail) == Parsed("", [ADD])


def test_arguments_json_and_schema_types():
    assert ToolCall("f", {"city": "Zürich"}).arguments_json == '{"city": "Zürich"}'
    assert param_types(TOOLS)["get_weather"] == {"city": "string", "days": "integer", "units": "string",
                                                 "detail": "object"}


def test_schema_types_from_tool_objects():
    """Engines pass tools as objects: pydantic models, or msgspec structs without model_dump / get (SGLang's
    /parse_function_call); parameters stay a dict in both."""
    from types import SimpleNamespace

    objects = [SimpleNamespace(type="function", function=SimpleNamespace(**t["function"])) for t in TOOLS]
    assert param_types(objects) == param_types(TOOLS)


def test_unknown_format_is_named():
    with pytest.raises(ValueError, match="'hermes'"):
        ToolCallStream("hermes")


THINK_CASES = [  # (text, starts_in_reasoning, expected)
    ("step 1\nstep 2\n</longcat_think>\n\nThe answer.", True, Split("step 1\nstep 2\n", "The answer.")),
    ("<longcat_think>\nhmm</longcat_think>Yes.", False, Split("\nhmm", "Yes.")),
    ("\n<longcat_think>hmm</longcat_think>Yes.", False, Split("hmm", "Yes.")),
    ("<longcat_think>hmm</longcat_think>Yes.", True, Split("hmm", "Yes.")),
    ("Just an answer < 3.", False, Split("", "Just an answer < 3.")),
    ("still thinking when cut off <", True, Split("still thinking when cut off <", "")),
    ("thinking</longcat_think>\n", True, Split("thinking", "")),
    ("t</longcat_think><longcat_tool_call>x</longcat_tool_call>", True,
     Split("t", "<longcat_tool_call>x</longcat_tool_call>")),
    ("", True, Split("", "")),
    ("<longcat_th", False, Split("", "<longcat_th")),
]


def _join_split(a: Split, b: Split) -> Split:
    return Split(a.reasoning + b.reasoning, a.content + b.content)


@pytest.mark.parametrize("text,inside,expected", THINK_CASES)
def test_reasoning_whole_and_streamed(text, inside, expected):
    assert split_reasoning(text, inside) == expected
    for pieces in [[text[:i], text[i:]] for i in range(len(text) + 1)] + [list(text)]:
        got, stream = _streamed(ReasoningStream(inside), pieces, _join_split, Split("", ""))
        assert _join_split(got, stream.finish()) == expected, pieces


def test_reasoning_stream_state():
    stream = ReasoningStream(True)
    assert stream.feed("a</longcat_") == Split("a", "") and stream.in_reasoning
    assert stream.feed("think>\nb") == Split("", "b") and not stream.in_reasoning
