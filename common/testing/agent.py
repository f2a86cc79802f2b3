"""Agent flavours of the generated checkpoints: LongCat's special tokens, a chat template per flavour,
and "scripted" weights whose greedy output is a fixed text (for the tool-call and reasoning tests).

    python -m longcat_common.testing.tiny OUT --flavour chat|thinking|2601|lite [--scripted]

Flavours (the chat format of the model family; real checkpoints ship their own templates):
  chat      Flash-Chat: ``SYSTEM:{s} [Round 0] USER:{q} ASSISTANT:``, JSON tool calls
  thinking  Flash-Thinking: the same with `` /think_on`` after each user turn; the model opens
            ``<longcat_think>`` itself
  2601      Flash-Thinking-2601: role tokens, tools in ``<longcat_tool_declare>``, XML tool
            calls, results as ``<longcat_observation><longcat_tool_response>NAME\\n...``; with
            ``enable_thinking`` (default on) the generation prompt ends with ``<longcat_think>\\n``
  lite      Flash-Lite (a non-thinking model): 2601's format with thinking off unless a request
            turns it on; use it with the ``lite`` preset (n-gram embeddings)

The LongCat tokens are added as single tokens (not "special", so that engines keep them in the text
they hand to parsers even when skipping special tokens; ``</longcat_s>`` stays the special EOS).

Scripted weights. The script is a list of pieces; every piece becomes one token (a LongCat token, or
an added token holding the whole text), and no token occurs twice, so the whole output is a chain in
which each token determines the next: the last token of the generation prompt -> piece 1 -> ... ->
``</longcat_s>``. Embeddings are random directions of a norm far above what the decoder layers add to
the residual stream, so after the final norm the hidden state is the current token's direction, and
the lm_head row of each piece is its predecessor's direction (every other row is zero): a top-1
margin of about ``SCRIPT_LOGIT`` whatever the (still random) layers do. Where the text repeats a tag
(a second call, a second argument), the repeat sits inside a longer piece.
"""

import torch
from tokenizers import AddedToken, Tokenizer

from ..checkpoint import MTP_PREFIX
from .tokenizer import EOS

LONGCAT_TOKENS = (
    "<longcat_think>", "</longcat_think>", "<longcat_tool_call>", "</longcat_tool_call>",
    "<longcat_arg_key>", "</longcat_arg_key>", "<longcat_arg_value>", "</longcat_arg_value>",
    "<longcat_system>", "<longcat_user>", "<longcat_assistant>", "<longcat_tool_declare>",
    "</longcat_tool_declare>", "<longcat_observation>", "<longcat_tool_response>", "</longcat_tool_response>",
)
FLAVOURS = ("chat", "thinking", "2601", "lite")
# config.json fields a flavour changes: Thinking-2601 declares LongcatCausalLM (no model_type) and
# DeepSeek-style YaRN (here over an original context of 256 positions).
FLAVOUR_CONFIG = {
    "2601": {"architectures": ["LongcatCausalLM"], "max_position_embeddings": 4096,
             "rope_scaling": {"type": "yarn", "factor": 16.0, "original_max_position_embeddings": 256,
                              "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}},
}
SCRIPT_EMBED_STD = 30.0  # per element; the layers add O(1) per element
SCRIPT_LOGIT = 20.0  # logit of the scripted next token; others stay within a few units of 0

_TOOLS_JSON = (
    "{%- if tools -%}"
    "{{- '## Tools\\nCall a function with <longcat_tool_call>\\n{\"name\": <function-name>, \"arguments\": "
    "<args-dict>}\\n</longcat_tool_call>. Functions:\\n' -}}"
    "{%- for tool in tools %}{{ (tool.function if tool.function is defined else tool) | tojson }}{{ '\\n' }}"
    "{%- endfor -%}{{- '## Messages\\n' -}}"
    "{%- endif -%}"
)
_TOOL_NAME = (  # the name of the call a tool message answers (OpenAI messages carry only its id)
    "{%- set found = namespace(name=message.name if message.name is defined and message.name else '') -%}"
    "{%- for m in messages if not found.name and m.role == 'assistant' and m.tool_calls -%}"
    "{%- for c in m.tool_calls if c.id == message.tool_call_id -%}{%- set found.name = c.function.name -%}"
    "{%- endfor -%}{%- endfor -%}"
)


def _json_template(user_suffix: str) -> str:
    call = ("{%- set args = call.function.arguments -%}"
            "{{ '<longcat_tool_call>\\n{\"name\": ' ~ (call.function.name | tojson) ~ ', \"arguments\": ' "
            "~ (args if args is string else args | tojson) ~ '}\\n</longcat_tool_call>' }}")
    return (
        _TOOLS_JSON
        + "{%- set ns = namespace(round=0, prev='') -%}"
        "{%- for message in messages -%}"
        "{%- if message.role == 'system' -%}{{ 'SYSTEM:' + message.content }}"
        "{%- elif message.role == 'user' -%}"
        "{%- if not loop.first %} {% endif -%}{{ '[Round ' ~ ns.round ~ '] USER:' + message.content + '"
        + user_suffix + "' }}"
        "{%- elif message.role == 'assistant' -%}{{ ' ASSISTANT:' + (message.content or '') }}"
        "{%- for call in message.tool_calls or [] -%}" + call + "{%- endfor -%}"
        "{{ '" + EOS + "' }}{%- set ns.round = ns.round + 1 -%}"
        "{%- elif message.role == 'tool' -%}"
        "{%- if ns.prev != 'tool' %}{{ ' [Round ' ~ ns.round ~ '] USER:' }}{% endif -%}"
        "{{ '<longcat_tool_response>' + message.content + '</longcat_tool_response>' }}"
        "{%- endif -%}{%- set ns.prev = message.role -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt %}{{ ' ASSISTANT:' }}{% endif -%}"
    )


def _role_template(thinking_default: str) -> str:
    """2601's role-token template; the generation prompt opens a think block when ``enable_thinking`` is
    true, or undefined and ``thinking_default`` is ``true``."""
    return (
        "{%- set system = messages[0].content if messages and messages[0].role == 'system' else '' -%}"
        "{%- if system or tools -%}{{ '<longcat_system>' + system }}"
        "{%- if tools -%}{{ '<longcat_tool_declare>\\n' }}"
        "{%- for tool in tools %}{{ (tool.function if tool.function is defined else tool) | tojson }}{{ '\\n' }}"
        "{%- endfor -%}{{ '</longcat_tool_declare>' }}{%- endif -%}"
        "{%- endif -%}"
        "{%- set ns = namespace(prev='') -%}"
        "{%- for message in messages -%}"
        "{%- if message.role == 'user' -%}{{ '<longcat_user>' + message.content }}"
        "{%- elif message.role == 'assistant' -%}{{ '<longcat_assistant>' + (message.content or '') }}"
        "{%- for call in message.tool_calls or [] -%}{{ '<longcat_tool_call>' + call.function.name + '\\n' }}"
        "{%- for key, value in call.function.arguments.items() -%}"
        "{{ '<longcat_arg_key>' + key + '</longcat_arg_key>\\n<longcat_arg_value>' "
        "+ (value if value is string else value | tojson) + '</longcat_arg_value>\\n' }}"
        "{%- endfor -%}{{ '</longcat_tool_call>' }}{%- endfor -%}{{ '" + EOS + "' }}"
        "{%- elif message.role == 'tool' -%}" + _TOOL_NAME
        + "{%- if ns.prev != 'tool' %}{{ '<longcat_observation>' }}{% endif -%}"
        "{{ '<longcat_tool_response>' + found.name + '\\n' + message.content + '</longcat_tool_response>' }}"
        "{%- endif -%}{%- set ns.prev = message.role -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<longcat_assistant>' }}"
        "{%- if enable_thinking is defined and enable_thinking or enable_thinking is not defined and "
        + thinking_default + " %}{{ '<longcat_think>\\n' }}{% endif -%}"
        "{%- endif -%}"
    )


TEMPLATES = {"chat": _json_template(""), "thinking": _json_template(" /think_on"), "2601": _role_template("true"),
             "lite": _role_template("false")}

# The scripted outputs: a think block (except chat and lite), text, then two tool calls (the tools of
# SCRIPT_TOOLS); the 2601 prompt already opened the think block.
_REASONING = "The user wants the weather in Paris for 3 days and the time in UTC.\n"
_JSON_CALL_2 = ('<longcat_tool_call>\n{"name": "get_time", "arguments": {"zone": "UTC"}}\n'
                '</longcat_tool_call>')
_XML_CALLS = ["<longcat_tool_call>",
              "get_weather\n<longcat_arg_key>city</longcat_arg_key>\n<longcat_arg_value>Paris</longcat_arg_value>\n"
              "<longcat_arg_key>days</longcat_arg_key>\n<longcat_arg_value>3</longcat_arg_value>\n",
              "</longcat_tool_call>",
              "<longcat_tool_call>get_time\n<longcat_arg_key>zone</longcat_arg_key>\n"
              "<longcat_arg_value>UTC</longcat_arg_value>\n</longcat_tool_call>", EOS]
_JSON_SCRIPT = ["Let me check.\n", "<longcat_tool_call>",
                '\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}\n',
                "</longcat_tool_call>", _JSON_CALL_2, EOS]
SCRIPTS = {
    "chat": _JSON_SCRIPT,
    "thinking": ["<longcat_think>", _REASONING, "</longcat_think>", "\n" + _JSON_SCRIPT[0], *_JSON_SCRIPT[1:]],
    "2601": [_REASONING, "</longcat_think>", "\nLet me check.\n", *_XML_CALLS],
    "lite": ["Let me check.\n", *_XML_CALLS],
}
SCRIPT_TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather forecast for a city",
                                      "parameters": {"type": "object", "properties": {
                                          "city": {"type": "string"}, "days": {"type": "integer"}},
                                          "required": ["city", "days"]}}},
    {"type": "function", "function": {"name": "get_time", "description": "Current time in a time zone",
                                      "parameters": {"type": "object", "properties": {
                                          "zone": {"type": "string"}}, "required": ["zone"]}}},
]
SCRIPT_CALLS = [("get_weather", {"city": "Paris", "days": 3}), ("get_time", {"zone": "UTC"})]
# the generation prompt's last token (what the first piece follows) in each flavour
PROMPT_END = {"chat": ":", "thinking": ":", "2601": "\n", "lite": "<longcat_assistant>"}


def agent_tokenizer(tok: Tokenizer, flavour: str, scripted: bool) -> Tokenizer:
    """``tok`` with the LongCat tokens and, if ``scripted``, every script piece as one token."""
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown flavour {flavour!r}; expected one of {FLAVOURS}")
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in LONGCAT_TOKENS])
    if scripted:
        pieces = [p for p in SCRIPTS[flavour] if p not in LONGCAT_TOKENS and p != EOS]
        tok.add_tokens([AddedToken(p, special=False, normalized=False) for p in pieces])
    return tok


def script_chain(tok: Tokenizer, flavour: str) -> list[int]:
    """Token ids of the script, preceded by the generation prompt's last token; all distinct."""
    ids = [tok.encode(PROMPT_END[flavour]).ids[-1]] + [tok.token_to_id(p) for p in SCRIPTS[flavour]]
    if None in ids or len(set(ids)) != len(ids):
        raise RuntimeError(f"the {flavour} script is not a chain of distinct single tokens: {ids}")
    return ids


def script_weights(tensors: dict[str, torch.Tensor], chain: list[int], gen: torch.Generator,
                   divisor: float = 1.0) -> None:
    """Rewrites embeddings (MTP's too) and lm_head in place so that greedy decoding follows ``chain``.
    ``divisor``: what the model divides its token embedding by (Flash-Lite: 1 + its n-gram tables, whose
    rows are averaged in); the MTP layer embeds plainly."""
    embed = tensors["model.embed_tokens.weight"]
    directions = torch.randn(embed.shape, generator=gen)
    head = torch.zeros(embed.shape)
    for prev, nxt in zip(chain, chain[1:]):  # the final norm scales the hidden state to norm ~sqrt(hidden)
        head[nxt] = SCRIPT_LOGIT * directions[prev] / (directions[prev].norm() * embed.shape[1] ** 0.5)
    for name, scale in (("model.embed_tokens.weight", divisor), (f"{MTP_PREFIX}embed_tokens.weight", 1.0)):
        if name in tensors:
            tensors[name] = (SCRIPT_EMBED_STD * scale * directions).to(embed.dtype)
    tensors["lm_head.weight"] = head.to(tensors["lm_head.weight"].dtype)


def script_text(flavour: str) -> str:
    """The text the scripted checkpoint generates (EOS excluded)."""
    return "".join(p for p in SCRIPTS[flavour] if p != EOS)
