"""vLLM adapters for longcat_common's tool-call and think-block parsers (``--tool-call-parser longcat`` /
``longcat_xml``, ``--reasoning-parser longcat``); registered by longcat_vllm.plugin."""

from collections.abc import Sequence

from vllm.entrypoints.generate.base.protocol import (
    DeltaFunctionCall,
    DeltaMessage,
    DeltaToolCall,
    ExtractedToolCallInformation,
    FunctionCall,
    ToolCall,
)
from vllm.reasoning.abs_reasoning_parsers import ReasoningParser
from vllm.renderers.chat_utils import make_tool_call_id
from vllm.tool_parsers.abstract_tool_parser import ToolParser

from longcat_common.reasoning import THINK_END, THINK_START, ReasoningStream, split_reasoning
from longcat_common.tool_calls import ToolCallStream, split_tool_calls


class _LongcatToolParser(ToolParser):
    fmt: str
    # tool_choice "required" / a named function: vLLM would otherwise force a JSON array by guided
    # decoding, which is not LongCat's call format; the model's own calls are parsed instead.
    supports_required_and_named = False

    def __init__(self, tokenizer, tools=None):
        super().__init__(tokenizer, tools)
        self._stream: ToolCallStream | None = None

    def adjust_request(self, request):
        request = super().adjust_request(request)
        if request.tools and request.tool_choice != "none":
            # the call tags are special tokens in some LongCat tokenizers: keep them in the text
            request.skip_special_tokens = False
        return request

    def _tools(self, request):
        return getattr(request, "tools", None) or self.tools

    def extract_tool_calls(self, model_output: str, request) -> ExtractedToolCallInformation:
        parsed = split_tool_calls(model_output, self.fmt, self._tools(request))
        calls = [ToolCall(id=make_tool_call_id(), function=FunctionCall(name=c.name, arguments=c.arguments_json))
                 for c in parsed.calls]
        return ExtractedToolCallInformation(tools_called=bool(calls), tool_calls=calls,
                                            content=parsed.content or None)

    def extract_tool_calls_streaming(self, previous_text, current_text, delta_text, previous_token_ids,
                                     current_token_ids, delta_token_ids, request) -> DeltaMessage | None:
        if self._stream is None:
            self._stream = ToolCallStream(self.fmt, self._tools(request))
        parsed = self._stream.feed(delta_text)
        deltas = []
        for call in parsed.calls:
            args = call.arguments_json
            self.current_tool_id += 1
            self.prev_tool_call_arr.append({"name": call.name, "arguments": call.arguments})
            self.streamed_args_for_tool.append(args)
            deltas.append(DeltaToolCall(index=self.current_tool_id, id=make_tool_call_id(), type="function",
                                        function=DeltaFunctionCall(name=call.name, arguments=args)))
        if not deltas and not parsed.content:
            return None
        return DeltaMessage(content=parsed.content or None, tool_calls=deltas)


class LongcatJsonToolParser(_LongcatToolParser):
    fmt = "longcat"


class LongcatXmlToolParser(_LongcatToolParser):
    fmt = "longcat_xml"


class LongcatReasoningParser(ReasoningParser):
    """Output starts inside the think block unless the request turns thinking off
    (``chat_template_kwargs={"enable_thinking": false}``); an opening tag in the output is dropped."""

    def __init__(self, tokenizer, *args, **kwargs):
        super().__init__(tokenizer, *args, **kwargs)
        missing = [t for t in (THINK_START, THINK_END) if t not in self.vocab]
        if missing:
            raise ValueError(f"--reasoning-parser longcat: the tokenizer has no single token for {missing}")
        self.start_id, self.end_id = self.vocab[THINK_START], self.vocab[THINK_END]
        self.thinking = (kwargs.get("chat_template_kwargs") or {}).get("enable_thinking", True) is not False
        self._stream = ReasoningStream(self.thinking)

    @property
    def reasoning_start_str(self) -> str:
        return THINK_START

    @property
    def reasoning_end_str(self) -> str:
        return THINK_END

    def is_reasoning_end(self, input_ids: Sequence[int]) -> bool:
        if not self.thinking:
            return True
        ids = list(input_ids)
        last_start = max((i for i, t in enumerate(ids) if t == self.start_id), default=-1)
        last_end = max((i for i, t in enumerate(ids) if t == self.end_id), default=-1)
        return last_end > last_start

    def is_reasoning_end_streaming(self, input_ids, delta_ids) -> bool:
        return self.end_id in delta_ids

    def extract_content_ids(self, input_ids: list[int]) -> list[int]:
        return input_ids[input_ids.index(self.end_id) + 1:] if self.end_id in input_ids else []

    def count_reasoning_tokens(self, token_ids: Sequence[int]) -> int:
        ids = list(token_ids)
        return ids.index(self.end_id) if self.end_id in ids else (len(ids) if self.thinking else 0)

    def adjust_request(self, request):
        request.skip_special_tokens = False  # the think tags are special tokens in some LongCat tokenizers
        return request

    def extract_reasoning(self, model_output: str, request) -> tuple[str | None, str | None]:
        split = split_reasoning(model_output, self.thinking)
        return split.reasoning or None, split.content or None

    def extract_reasoning_streaming(self, previous_text, current_text, delta_text, previous_token_ids,
                                    current_token_ids, delta_token_ids) -> DeltaMessage | None:
        split = self._stream.feed(delta_text)
        if not split.reasoning and not split.content:
            return None
        return DeltaMessage(reasoning=split.reasoning or None, content=split.content or None)
