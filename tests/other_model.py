"""A small non-LongCat model made locally: a 2-layer Llama with random weights, the LongCat test
tokenizer's vocabulary and a generic ChatML template that takes any role. The good-citizen tests serve it
with and without the plugin (tests/*/test_other_models.py) and expect the same everything."""

import json
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from longcat_common.testing.tokenizer import build_tokenizer, write_tokenizer

CHATML_TEMPLATE = (  # any role, tools listed in the system turn: nothing LongCat-specific
    "{%- if tools %}{{ '<|im_start|>system\\nTools: ' + (tools | tojson) + '<|im_end|>\\n' }}{% endif -%}"
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + (message['content'] or '') + '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif -%}"
)
ARCHITECTURE = "LlamaForCausalLM"
CHAT = [  # every role the ChatML template renders; LongCat's template refuses developer and tool
    {"role": "system", "content": "You are terse."},
    {"role": "developer", "content": "Answer in one word."},
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "content": "Let me check."},
    {"role": "tool", "content": "sunny, 21 C", "tool_call_id": "call_0"},
    {"role": "user", "content": "So?"},
]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def write_llama(out_dir: Path, seed: int = 0) -> Path:
    """fp32 safetensors checkpoint + tokenizer in out_dir; returns out_dir."""
    out_dir = Path(out_dir)
    tok = build_tokenizer()
    # intermediate_size a multiple of 32: SGLang on the CPU pads it to one (adjust_config_with_unaligned_cpu_tp)
    # and its Transformers backend, which serves this Llama there, does not pad the weights to match
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=192, intermediate_size=224,
                         num_hidden_layers=2, num_attention_heads=3, num_key_value_heads=1, head_dim=64,
                         max_position_embeddings=512, rms_norm_eps=1e-5, tie_word_embeddings=False,
                         bos_token_id=1, eos_token_id=2, pad_token_id=3, torch_dtype="float32")
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).float()
    with torch.no_grad():
        for p in model.parameters():  # spread logits enough for stable greedy choices
            p.normal_(0.0, 0.08) if p.dim() > 1 else p.fill_(1.0)
    model.save_pretrained(out_dir, safe_serialization=True)
    write_tokenizer(out_dir, tok, model_max_length=512, chat_template=CHATML_TEMPLATE)
    generation = json.loads((out_dir / "generation_config.json").read_text())
    (out_dir / "generation_config.json").write_text(json.dumps({**generation, "eos_token_id": 2}))
    return out_dir
