"""Fixtures shared by every test session; engine-free (no vLLM / SGLang imports here)."""

import json

import pytest
from tokenizers import Tokenizer

from longcat_common.testing.tiny import write_checkpoint

PROMPTS = (  # typical prompts: English prose like the tokenizer's training text, code, the chat format
    "The keeper climbed the stairs and lit the lamp before the sun had set.",
    "A mixture of experts sends each token to a few specialists instead of all of them.",
    "Hello, my name is Anna and I live in a small town near the sea. Every morning I",
    "Mountains are formed over millions of years as the plates of the earth push against each other.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "SYSTEM:You are a helpful assistant. [Round 0] USER:Tell me a short story. ASSISTANT:",
)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """Path of the tiny preset's bf16 checkpoint (seed 0), written once per session."""
    return write_checkpoint(tmp_path_factory.mktemp("tiny"), preset="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_fp8_ckpt(tmp_path_factory):
    """Path of the tiny preset's Chat-FP8 checkpoint: the quantisation of ``tiny_ckpt``'s weights."""
    return write_checkpoint(tmp_path_factory.mktemp("tiny_fp8"), preset="tiny", fp8=True, seed=0)


# config.json of LongCat-Flash-Thinking-2601's shape: architecture LongcatCausalLM (no model_type) and
# DeepSeek-style YaRN, here over an original context of 32 positions so that prompts reach past it.
THINKING_2601 = {
    "architectures": ["LongcatCausalLM"], "max_position_embeddings": 512,
    "rope_scaling": {"type": "yarn", "factor": 16.0, "original_max_position_embeddings": 32, "beta_fast": 32,
                     "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
}


@pytest.fixture(scope="session")
def yarn_ckpt(tmp_path_factory):
    """The tiny preset's weights (seed 0) under Thinking-2601's config shape (THINKING_2601)."""
    return write_checkpoint(tmp_path_factory.mktemp("yarn"), preset="tiny", seed=0, overrides=THINKING_2601)


@pytest.fixture(scope="session")
def plain_rope_twin(yarn_ckpt, tmp_path_factory):
    """yarn_ckpt's weights with rope_scaling removed (files linked, config rewritten): what a port without
    YaRN would compute."""
    twin = tmp_path_factory.mktemp("plain-rope")
    for f in yarn_ckpt.iterdir():
        if f.name != "config.json":
            (twin / f.name).symlink_to(f)
    config = json.loads((yarn_ckpt / "config.json").read_text())
    del config["rope_scaling"]
    (twin / "config.json").write_text(json.dumps(config))
    return twin


@pytest.fixture(scope="session")
def long_prompt_ids(prompt_ids) -> list[int]:
    """About 110 tokens: well past THINKING_2601's original context of 32."""
    return [i for ids in prompt_ids for i in ids][:110]


@pytest.fixture(scope="session")
def draft_ckpt(tmp_path_factory):
    """Path of the good-draft preset's bf16 checkpoint (seed 0): the MTP draft agrees with the target ~90%."""
    return write_checkpoint(tmp_path_factory.mktemp("draft"), preset="draft", seed=0)


@pytest.fixture(scope="session")
def draft_fp8_ckpt(tmp_path_factory):
    """The good-draft preset in the Chat-FP8 layout (MTP layer quantised too)."""
    return write_checkpoint(tmp_path_factory.mktemp("draft_fp8"), preset="draft", fp8=True, seed=0)


@pytest.fixture(scope="session")
def lite_ckpts(tmp_path_factory):
    """Flash-Lite checkpoints (seed 0), written on first use: "lite" (ngram_* spelling), "lite-oe" (oe_*
    spelling, LongcatCausalLM), "lite-fp8" (the lite weights in the block-FP8 layout), "lite-draft" (good MTP draft)."""
    made = {}

    def get(name: str):
        if name not in made:
            preset, fp8 = name.removesuffix("-fp8"), name.endswith("-fp8")
            made[name] = write_checkpoint(tmp_path_factory.mktemp(name), preset=preset, fp8=fp8, seed=0)
        return made[name]
    return get


# Flash-Lite prompts (token ids; EOS = 2, 0 = unk): earlier EOS tokens (a past turn's end), EOS at scored
# positions, a 0, prompts longer than one prefill chunk of 16 with EOS around the chunk boundaries, and two
# prompts that end alike after different histories.
LITE_PROMPTS = [
    [1, 17, 200, 2, 99, 300, 12, 2, 650, 88, 23, 400, 5, 6],
    [1] + list(range(301, 316)) + [2] + list(range(316, 330)) + [2] + list(range(330, 346)),
    [1, 50, 51, 52, 2, 2, 53, 54, 0, 55, 56],
    [1, 400, 401, 402, 7, 8, 9],
    [1, 500, 2, 402, 7, 8, 9],
    [1, 5, 9, 33],
    [1] + list(range(600, 620)) + [2, 2] + list(range(620, 640)),
]


@pytest.fixture(scope="session")
def prompts() -> list[str]:
    return list(PROMPTS)


@pytest.fixture(scope="session")
def prompt_ids(tiny_ckpt) -> list[list[int]]:
    """PROMPTS tokenised by the generated checkpoints' tokenizer (the same for every seed and preset)."""
    tok = Tokenizer.from_file(str(tiny_ckpt / "tokenizer.json"))
    return [tok.encode(p).ids for p in PROMPTS]
