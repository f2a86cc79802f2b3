"""``--tool-call-parser longcat`` is vLLM's own name, which our plugin takes over (longcat_vllm/plugin.py).

Acceptable because the name means LongCat's JSON call format only and ours gives what vLLM's built-in
(``LongcatFlashToolParser``, Hermes with LongCat's tags) gives on every output that one reads right, and
a right answer where it does not (docs/vllm.md, "Other models"). Both parsers, real vLLM objects, one
LongCat-tokenizer (the tiny "chat" flavour).
"""

import json

import pytest
from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
from vllm.tokenizers import get_tokenizer
from vllm.tool_parsers.longcat_tool_parser import LongcatFlashToolParser

from longcat_common.testing.tiny import write_checkpoint
from longcat_vllm.parsers import LongcatJsonToolParser

CALL = '<longcat_tool_call>\n{{"name": "get_weather", "{key}": {args}}}\n</longcat_tool_call>'
PARIS = CALL.format(key="arguments", args='{"city": "Paris"}')
ROME = CALL.format(key="arguments", args='{"city": "Rome"}')
PARAMETERS = CALL.format(key="parameters", args='{"city": "Paris"}')
STRING_ARGUMENTS = CALL.format(key="arguments", args=json.dumps('{"city": "Paris"}'))
BROKEN = CALL.format(key="arguments", args='{"city": }')
PARIS_CALL = [("get_weather", {"city": "Paris"})]
# output -> (tool calls, content) both parsers give
SAME = {
    PARIS: (PARIS_CALL, None),
    PARIS + "\n" + ROME: (PARIS_CALL + [("get_weather", {"city": "Rome"})], None),
    "Let me check.\n" + PARIS: (PARIS_CALL, "Let me check.\n"),
    "It is sunny.": ([], "It is sunny."),
    PARIS.removesuffix("\n</longcat_tool_call>"): (PARIS_CALL, None),  # cut off at max_tokens
    BROKEN: ([], BROKEN),
}
# output -> (vLLM's built-in, ours)
DIFFERENT = {
    PARIS + "\nDone.": ((PARIS_CALL, None), (PARIS_CALL, "Done.")),  # vLLM drops the text after the call
    PARIS + "\n" + BROKEN: (([], PARIS + "\n" + BROKEN), (PARIS_CALL, BROKEN)),  # vLLM drops the good call too
    PARAMETERS: (([], PARAMETERS), (PARIS_CALL, None)),  # vLLM reads "arguments" only
    # arguments written as a JSON string: vLLM passes on the string, double-encoded
    STRING_ARGUMENTS: (([("get_weather", '{"city": "Paris"}')], None), (PARIS_CALL, None)),
}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]


@pytest.fixture(scope="module")
def parse(tmp_path_factory):
    tokenizer = get_tokenizer(str(write_checkpoint(tmp_path_factory.mktemp("chat"), preset="tiny", flavour="chat")))
    request = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}], tools=TOOLS)

    def run(parser_cls, text):
        out = parser_cls(tokenizer, None).extract_tool_calls(text, request)
        calls = [(c.function.name, json.loads(c.function.arguments)) for c in out.tool_calls]
        assert out.tools_called == bool(calls)
        return calls, out.content
    return run


@pytest.mark.parametrize("text", list(SAME))
def test_same_as_vllms_longcat_parser(parse, text):
    assert parse(LongcatFlashToolParser, text) == parse(LongcatJsonToolParser, text) == SAME[text]


@pytest.mark.parametrize("text", list(DIFFERENT))
def test_right_where_vllms_is_not(parse, text):
    assert (parse(LongcatFlashToolParser, text), parse(LongcatJsonToolParser, text)) == DIFFERENT[text]
