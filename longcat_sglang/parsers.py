"""SGLang adapters for longcat_common's tool-call and think-block parsers (``--tool-call-parser longcat``
/ ``longcat_xml``, ``--reasoning-parser longcat``); registered by longcat_sglang.plugin."""

import logging

from sglang.srt.function_call.base_format_detector import BaseFormatDetector
from sglang.srt.function_call.core_types import StreamingParseResult, StructureInfo, ToolCallItem
from sglang.srt.parser.reasoning_parser import BaseReasoningFormatDetector
from sglang.srt.parser.reasoning_parser import StreamingParseResult as ReasoningResult

from longcat_common.reasoning import THINK_END, THINK_START, ReasoningStream, split_reasoning
from longcat_common.tool_calls import CALL_END, CALL_START, Parsed, ToolCallStream, split_tool_calls

logger = logging.getLogger(__name__)
IN_USE = "longcat-flash-plugins: SGLang parses with longcat_sglang's {}"
_announced: set[str] = set()


def _announce(parser: str) -> None:
    """Once per process, when first used: the plugin registers before SGLang configures its logging."""
    if parser not in _announced:
        _announced.add(parser)
        logger.info(IN_USE.format(parser))


class _LongcatDetector(BaseFormatDetector):
    fmt: str

    def __init__(self):
        super().__init__()
        self.bot_token, self.eot_token = CALL_START, CALL_END
        self._stream: ToolCallStream | None = None
        _announce(f"tool parser {self.fmt}")

    def has_tool_call(self, text: str) -> bool:
        return CALL_START in text

    def detect_and_parse(self, text: str, tools) -> StreamingParseResult:
        parsed = split_tool_calls(text, self.fmt, tools)
        return StreamingParseResult(normal_text=parsed.content, calls=[
            ToolCallItem(tool_index=i, name=c.name, parameters=c.arguments_json) for i, c in enumerate(parsed.calls)])

    def parse_streaming_increment(self, new_text: str, tools) -> StreamingParseResult:
        if self._stream is None:
            self._stream = ToolCallStream(self.fmt, tools)
        return self._result(self._stream.feed(new_text))

    def finish(self, tools) -> StreamingParseResult:
        return self._result(self._stream.finish()) if self._stream else StreamingParseResult()

    def _result(self, parsed: Parsed) -> StreamingParseResult:
        """Each call goes out whole: name and complete arguments in one delta."""
        calls = []
        for call in parsed.calls:
            self.current_tool_id += 1
            self.prev_tool_call_arr.append({"name": call.name, "arguments": call.arguments})
            self.streamed_args_for_tool.append(call.arguments_json)
            calls.append(ToolCallItem(tool_index=self.current_tool_id, name=call.name,
                                      parameters=call.arguments_json))
        return StreamingParseResult(normal_text=parsed.content, calls=calls)

    # tool_choice "required" / a named function: the model's own calls are parsed, as vLLM does for these
    # parsers, instead of constraining the output to a JSON array (not LongCat's format)
    def supports_structural_tag(self) -> bool:
        return False

    def parses_required_natively(self) -> bool:
        return True

    def structure_info(self):
        return lambda name: StructureInfo(begin=f"{CALL_START}{name}\n", end=CALL_END, trigger=CALL_START)


class LongcatJsonDetector(_LongcatDetector):
    fmt = "longcat"

    def structure_info(self):
        return lambda name: StructureInfo(begin=f'{CALL_START}\n{{"name": "{name}", "arguments": ',
                                          end=f"}}\n{CALL_END}", trigger=CALL_START)


class LongcatXmlDetector(_LongcatDetector):
    fmt = "longcat_xml"


class LongcatReasoningDetector(BaseReasoningFormatDetector):
    """``force_reasoning`` (SGLang sets it from ``reasoning_default``: thinking unless the request's
    ``chat_template_kwargs`` say ``enable_thinking: false``) = the output starts inside the think block."""

    def __init__(self, stream_reasoning: bool = True, force_reasoning: bool = False, **kwargs):
        super().__init__(THINK_START, THINK_END, force_reasoning=force_reasoning, stream_reasoning=stream_reasoning,
                         reasoning_default="enable_thinking", **kwargs)
        self._stream = ReasoningStream(force_reasoning)
        _announce("reasoning parser longcat")

    def detect_and_parse(self, text: str) -> ReasoningResult:
        split = split_reasoning(text, self.force_reasoning)
        return ReasoningResult(normal_text=split.content, reasoning_text=split.reasoning)

    def parse_streaming_increment(self, new_text: str) -> ReasoningResult:
        split = self._stream.feed(new_text)
        self._in_reasoning = self._stream.in_reasoning
        return ReasoningResult(normal_text=split.content, reasoning_text=split.reasoning)

    def finish(self) -> ReasoningResult:
        split = self._stream.finish()
        return ReasoningResult(normal_text=split.content, reasoning_text=split.reasoning)
