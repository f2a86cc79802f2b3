"""LongCat tool calls in model output, engine-free: the two formats, whole-text and streaming.

``longcat`` (Flash-Chat, Flash-Thinking)::

    <longcat_tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </longcat_tool_call>

``longcat_xml`` (Flash-Thinking-2601, Flash-Lite)::

    <longcat_tool_call>get_weather
    <longcat_arg_key>city</longcat_arg_key>
    <longcat_arg_value>Paris</longcat_arg_value>
    </longcat_tool_call>

  a value is raw text when the tool's JSON schema types the parameter ``string`` and JSON otherwise
  (raw text too where it is not valid JSON, or the parameter is not declared).

Several calls may follow each other. Text outside the calls is content, except whitespace at the
start and right after a call (the model writes a newline after a think block, and engines hand the
tool parser the text after it in pieces of their own choosing). A call whose body does not parse is
content, as written. A call still open when the text ends is parsed as if closed by
``split_tool_calls``; ``ToolCallStream`` cannot know that the text has ended and holds it back, so
only complete calls stream (engines do not tell a tool parser that the output is over).
"""

import json
import re
from dataclasses import dataclass, field

from .reasoning import partial_tag_suffix

CALL_START, CALL_END = "<longcat_tool_call>", "</longcat_tool_call>"
ARG_KEY, ARG_KEY_END = "<longcat_arg_key>", "</longcat_arg_key>"
ARG_VALUE, ARG_VALUE_END = "<longcat_arg_value>", "</longcat_arg_value>"
FORMATS = ("longcat", "longcat_xml")

_XML_ARG = re.compile(re.escape(ARG_KEY) + r"(.*?)" + re.escape(ARG_KEY_END) + r"\s*"
                      + re.escape(ARG_VALUE) + r"(.*?)" + re.escape(ARG_VALUE_END) + r"\s*", re.DOTALL)
_NAME = re.compile(r"[^\s<>{}\"]+")


@dataclass
class ToolCall:
    name: str
    arguments: dict

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments, ensure_ascii=False)


@dataclass
class Parsed:
    content: str = ""
    calls: list[ToolCall] = field(default_factory=list)


def param_types(tools) -> dict[str, dict[str, object]]:
    """tool name -> parameter name -> JSON-schema ``type``. OpenAI ``tools`` as dicts or as objects with those
    attributes: pydantic models (the chat endpoints), msgspec structs (SGLang's ``/parse_function_call``)."""
    out = {}
    for tool in tools or ():
        function = _field(tool, "function") or {}
        properties = (_field(function, "parameters") or {}).get("properties") or {}
        out[_field(function, "name")] = {k: (v or {}).get("type") for k, v in properties.items()}
    return out


def _field(obj, name: str):
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _is_string(schema_type) -> bool:
    return schema_type == "string" or (isinstance(schema_type, list) and schema_type == ["string"])


def _xml_value(raw: str, schema_type):
    if _is_string(schema_type):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_call(body: str, fmt: str, types: dict) -> ToolCall | None:
    """The call in the text between the tags, or None if it is malformed."""
    if fmt == "longcat":
        try:
            call = json.loads(body)
        except ValueError:
            return None
        if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not call["name"]:
            return None
        args = call.get("arguments", call.get("parameters", {}))
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                return None
        return ToolCall(call["name"], args) if isinstance(args, dict) else None
    head, key, rest = body.partition(ARG_KEY)
    name = head.strip()
    if not _NAME.fullmatch(name):
        return None
    rest = key + rest
    declared = types.get(name, {})
    args, pos = {}, 0
    while pos < len(rest):
        m = _XML_ARG.match(rest, pos)
        if not m:
            return None
        args[m[1].strip()] = _xml_value(m[2], declared.get(m[1].strip()))
        pos = m.end()
    return ToolCall(name, args)


def split_tool_calls(text: str, fmt: str, tools=None) -> Parsed:
    stream = ToolCallStream(fmt, tools)
    parsed = stream.feed(text)
    rest = stream.finish()
    return Parsed(parsed.content + rest.content, parsed.calls + rest.calls)


class ToolCallStream:
    """Feed output text piece by piece; each call returns the new content and the calls completed by it.

    Content is released as soon as it cannot be the start of a call; a call when its closing tag arrives.
    """

    def __init__(self, fmt: str, tools=None):
        if fmt not in FORMATS:
            raise ValueError(f"unknown LongCat tool-call format {fmt!r}; expected one of {FORMATS}")
        self.fmt, self.types = fmt, param_types(tools)
        self.buffer = ""
        self.in_call = False
        self.skip_space = True  # dropping whitespace: at the start and after a call
        self.calls_seen = 0

    def feed(self, delta: str) -> Parsed:
        self.buffer += delta
        out = Parsed()
        while self.buffer:
            if self.in_call:
                end = self.buffer.find(CALL_END)
                if end < 0:
                    break
                body = self.buffer[:end]
                self._close(body, CALL_START + body + CALL_END, out)
                self.buffer = self.buffer[end + len(CALL_END):]
                continue
            if self.skip_space:
                self.buffer = self.buffer.lstrip()
                if not self.buffer:
                    break
                self.skip_space = False
            start = self.buffer.find(CALL_START)
            if start < 0:
                keep = partial_tag_suffix(self.buffer, CALL_START)
                out.content += self.buffer[:len(self.buffer) - keep]
                self.buffer = self.buffer[len(self.buffer) - keep:]
                break
            out.content += self.buffer[:start]
            self.buffer, self.in_call = self.buffer[start + len(CALL_START):], True
        return out

    def finish(self) -> Parsed:
        """End of output: an open call is parsed as if closed; held-back text is content."""
        out, rest = Parsed(), self.buffer
        self.buffer = ""
        if self.in_call:
            self._close(rest, CALL_START + rest, out)
        elif not self.skip_space:
            out.content += rest
        return out

    def _close(self, body: str, raw: str, out: Parsed) -> None:
        call = parse_call(body, self.fmt, self.types)
        self.in_call = False
        if call is None:
            out.content += raw
        else:
            out.calls.append(call)
            self.calls_seen += 1
            self.skip_space = True
