"""A small real tokenizer for generated LongCat-Flash checkpoints, built offline.

Byte-level BPE trained on the English text below (about 1,000 tokens), with LongCat-Flash-Chat's
special tokens at ids 0..3 and its chat format:

    SYSTEM:{system} [Round 0] USER:{user} ASSISTANT:{assistant}</longcat_s> [Round 1] USER:{user} ASSISTANT:

Nothing is added around encoded text (no automatic BOS); the chat template does not emit one either.
"""

import json
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

UNK, BOS, EOS, PAD = "<longcat_unk>", "<longcat_s>", "</longcat_s>", "<longcat_pad>"
SPECIAL_TOKENS = (UNK, BOS, EOS, PAD)  # ids 0, 1, 2, 3
UNK_ID, BOS_ID, EOS_ID, PAD_ID = range(4)
TARGET_VOCAB = 1024

CHAT_TEMPLATE = (
    "{%- set ns = namespace(round=0) -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{{ 'SYSTEM:' + message['content'] }}"
    "{%- elif message['role'] == 'user' -%}"
    "{%- if not loop.first %} {% endif -%}{{ '[Round ' ~ ns.round ~ '] USER:' + message['content'] }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{ ' ASSISTANT:' + message['content'] + '" + EOS + "' }}{%- set ns.round = ns.round + 1 -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt %}{{ ' ASSISTANT:' }}{% endif -%}"
)

CORPUS = """\
The old lighthouse stood at the end of a narrow road that wound between the dunes. Every evening the
keeper climbed the spiral stairs, counted the steps out of habit, and lit the great lamp before the
sun had fully set. Ships passing in the night saw the beam turn slowly over the water, and the
sailors knew that the rocks were near and that the harbour was only a few hours away.

In the small town below, the bakery opened before dawn. The baker mixed flour, water, salt and
yeast, folded the dough on a wooden table, and left it to rise under a linen cloth. By six o'clock
the first loaves came out of the oven with a crust that cracked as it cooled. People queued in the
cold with their hands in their pockets, talking about the weather, the fishing boats and the news.

A computer program is a list of instructions that a machine follows one after another. Programs
read input, store values in memory, compare numbers, and write results to the screen or to a file.
Good programs are written so that other people can read them: the names say what things are, the
functions are short, and the tests show that the code does what the author intended it to do.

Language models predict the next word from the words that came before it. They turn text into
tokens, look up a vector for each token, and pass the vectors through many layers of attention and
feed forward networks. A mixture of experts sends each token to a few specialists instead of all of
them, which saves compute while keeping a large number of parameters available to the model.

The garden behind the house was full of tomatoes, beans and sunflowers. In the summer the children
watered the plants in the morning and picked berries in the afternoon. A grey cat slept on the warm
stones by the wall and opened one eye whenever a bird landed on the fence. When autumn came, the
family dried the seeds, stored the apples in the cellar and planted tulips for the next spring.

Mountains are formed over millions of years as the plates of the earth push against each other.
Rivers cut deep valleys through the rock, glaciers carve wide basins, and wind and rain wear the
peaks down grain by grain. Hikers who reach the top on a clear day can see lakes, forests and
villages spread out below them like the pieces of a map.

SYSTEM:You are a helpful assistant. [Round 0] USER:What is the capital of France? ASSISTANT:The
capital of France is Paris.</longcat_s> [Round 1] USER:How many days are in a week? ASSISTANT:There
are seven days in a week.</longcat_s> [Round 2] USER:Tell me a short story. ASSISTANT:Once upon a
time there was a curious cat who wanted to see the sea.</longcat_s>
0 1 2 3 4 5 6 7 8 9 10 11 12 20 50 100 2024 3.14 = + - * / ( ) [ ] { } < > " ' : ; , . ! ? # @ % &
"""


def build_tokenizer() -> Tokenizer:
    """The trained tokenizer; deterministic (same corpus, same merges)."""
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TARGET_VOCAB, show_progress=False,
                                  special_tokens=[AddedToken(t, special=True, normalized=False)
                                                  for t in SPECIAL_TOKENS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    for i, token in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(token) == i, (token, tok.token_to_id(token))
    return tok


def muted_token_ids(tok: Tokenizer) -> list[int]:
    """Ids the generated model never predicts (zero lm_head rows): unk, bos and pad, and tokens that are
    not printable text on their own (lone UTF-8 bytes, control characters), so that every engine
    detokenises a generated sequence to the same string."""
    def printable(text: str) -> bool:
        return "\ufffd" not in text and all(c.isprintable() or c in "\n\t" for c in text)

    specials = [UNK_ID, BOS_ID, PAD_ID]
    return specials + [i for i in range(len(SPECIAL_TOKENS), tok.get_vocab_size()) if not printable(tok.decode([i]))]


def write_tokenizer(out_dir: Path, tok: Tokenizer, model_max_length: int, chat_template: str = CHAT_TEMPLATE) -> None:
    """Writes tokenizer.json and tokenizer_config.json into out_dir."""
    tok.save(str(out_dir / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": UNK, "bos_token": BOS, "eos_token": EOS, "pad_token": PAD,
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,
        "chat_template": chat_template,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
