"""Generator flavours: LongCat tokens as single tokens, the chat template of each flavour (tools, tool
results, thinking switch), and a scripted checkpoint's greedy output through the transformers oracle
(Flash-Lite's, whose n-gram embedding transformers lacks, through tests/common/reference_forward.py)."""

import pytest
from transformers import PreTrainedTokenizerFast  # AutoTokenizer reads the 2601-shaped config.json

from longcat_common.reasoning import split_reasoning
from longcat_common.testing.tiny import write_checkpoint
from longcat_common.testing.agent import FLAVOURS, LONGCAT_TOKENS, SCRIPT_CALLS, SCRIPT_TOOLS, SCRIPTS, script_text
from longcat_common.tool_calls import ToolCall, split_tool_calls
from tests import oracle
from tests.common import reference_forward

HISTORY = [  # a tool-call turn and its results, arguments as objects (what transformers renders)
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}},
        {"id": "c2", "type": "function", "function": {"name": "get_time", "arguments": {"zone": "UTC"}}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    {"role": "tool", "tool_call_id": "c2", "content": "12:00"},
]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    root = tmp_path_factory.mktemp("flavours")
    return {f: PreTrainedTokenizerFast.from_pretrained(write_checkpoint(root / f, flavour=f))
            for f in FLAVOURS}


def test_longcat_tokens_are_single_tokens(tokenizers):
    tok = tokenizers["2601"]
    for token in LONGCAT_TOKENS + ("</longcat_s>",):
        assert len(tok(token, add_special_tokens=False).input_ids) == 1, token
        assert tok.decode(tok(token, add_special_tokens=False).input_ids, skip_special_tokens=True) == (
            "" if token == "</longcat_s>" else token)  # kept in the text parsers read


def test_chat_and_thinking_templates(tokenizers):
    messages = HISTORY[:2]
    chat = tokenizers["chat"].apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert chat == "SYSTEM:Be brief. [Round 0] USER:Weather? ASSISTANT:"
    thinking = tokenizers["thinking"].apply_chat_template(HISTORY, tools=SCRIPT_TOOLS, tokenize=False,
                                                          add_generation_prompt=True)
    assert thinking.startswith("## Tools\n") and '"name": "get_weather"' in thinking
    assert thinking.endswith(
        '## Messages\nSYSTEM:Be brief. [Round 0] USER:Weather? /think_on ASSISTANT:<longcat_tool_call>\n'
        '{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}\n</longcat_tool_call><longcat_tool_call>\n'
        '{"name": "get_time", "arguments": {"zone": "UTC"}}\n</longcat_tool_call></longcat_s> [Round 1] USER:'
        '<longcat_tool_response>sunny</longcat_tool_response><longcat_tool_response>12:00</longcat_tool_response>'
        ' ASSISTANT:')


def test_2601_template(tokenizers):
    tok = tokenizers["2601"]
    text = tok.apply_chat_template(HISTORY, tools=SCRIPT_TOOLS, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<longcat_system>Be brief.<longcat_tool_declare>\n{")
    assert text.endswith(
        "</longcat_tool_declare><longcat_user>Weather?<longcat_assistant><longcat_tool_call>get_weather\n"
        "<longcat_arg_key>city</longcat_arg_key>\n<longcat_arg_value>Paris</longcat_arg_value>\n"
        "<longcat_arg_key>days</longcat_arg_key>\n<longcat_arg_value>3</longcat_arg_value>\n</longcat_tool_call>"
        "<longcat_tool_call>get_time\n<longcat_arg_key>zone</longcat_arg_key>\n<longcat_arg_value>UTC"
        "</longcat_arg_value>\n</longcat_tool_call></longcat_s><longcat_observation><longcat_tool_response>"
        "get_weather\nsunny</longcat_tool_response><longcat_tool_response>get_time\n12:00</longcat_tool_response>"
        "<longcat_assistant><longcat_think>\n")
    off = tok.apply_chat_template(HISTORY[:2], tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert off == "<longcat_system>Be brief.<longcat_user>Weather?<longcat_assistant>"


def test_lite_template_is_2601s_without_thinking(tokenizers):
    """Flash-Lite is a non-thinking model: 2601's format, no think block unless a request asks for one."""
    lite, full = (tokenizers[f].apply_chat_template(HISTORY, tools=SCRIPT_TOOLS, tokenize=False,
                                                    add_generation_prompt=True) for f in ("lite", "2601"))
    assert lite + "<longcat_think>\n" == full
    assert tokenizers["lite"].apply_chat_template(HISTORY[:2], tokenize=False, add_generation_prompt=True,
                                                  enable_thinking=True).endswith("<longcat_assistant><longcat_think>\n")


def _reference_greedy(ckpt, ids: list[int], steps: int) -> tuple[list[int], list[float]]:
    cfg, weights = reference_forward.load_checkpoint(ckpt)
    new, margins = [], []
    for _ in range(steps):
        top = reference_forward.forward(cfg, weights, ids + new)[-1].topk(2)
        new.append(int(top.indices[0]))
        margins.append(float(top.values[0] - top.values[1]))
    return new, margins


@pytest.mark.parametrize("flavour, preset", [("2601", "tiny"), ("lite", "lite")])
def test_scripted_greedy_output_is_the_script(tmp_path, flavour, preset):
    ckpt = write_checkpoint(tmp_path / "scripted", preset, flavour=flavour, scripted=True)
    tok = PreTrainedTokenizerFast.from_pretrained(ckpt)
    ids = tok.apply_chat_template(HISTORY[:2], tools=SCRIPT_TOOLS, add_generation_prompt=True, tokenize=True,
                                  return_dict=False)
    if flavour == "lite":
        new, margins = _reference_greedy(ckpt, ids, len(SCRIPTS[flavour]))
    else:
        new, margins = oracle.greedy(oracle.load_oracle(ckpt), ids, len(SCRIPTS[flavour]))
    assert new[-1] == tok.eos_token_id and min(margins) > 10
    text = tok.decode(new[:-1])
    assert text == script_text(flavour)
    split = split_reasoning(text, starts_in_reasoning=flavour == "2601")
    assert split.reasoning.startswith("The user wants") if flavour == "2601" else split.reasoning == ""
    parsed = split_tool_calls(split.content, "longcat_xml", SCRIPT_TOOLS)
    assert parsed.content == "Let me check.\n" and parsed.calls == [ToolCall(n, a) for n, a in SCRIPT_CALLS]


def test_scripted_needs_a_flavour(tmp_path):
    with pytest.raises(ValueError, match="flavour"):
        write_checkpoint(tmp_path, scripted=True)
