"""Flash-Lite's n-gram embedding (longcat_common.ngram) against the reference's per-token reading of Meituan's
code: ids over whole sequences and in chunks with carried histories, several requests at once, both config
spellings, the checkpoint names and the generator's Lite presets."""

import json
import random

import pytest
import torch

from longcat_common.checkpoint import expected_tensors
from longcat_common.config import LITE_ARCHITECTURE, LongcatConfig
from longcat_common.ngram import (BEFORE_START, NgramLookup, NgramSpec, SlotTokens, load_projection,
                                  load_table_shard, positions_before, windows)
from longcat_common.testing.tiny import hub_config, write_checkpoint
from tests.common import reference_forward as ref

EOS = 2


@pytest.fixture(scope="module")
def lite(tmp_path_factory):
    return ref.load_checkpoint(write_checkpoint(tmp_path_factory.mktemp("lite"), "lite"))


def history_after(sequence_tail: list[int], n: int) -> list[int]:
    """The n-1 tokens a request carries after ``sequence_tail`` (its last tokens), BEFORE_START-padded."""
    tail = list(sequence_tail)[-(n - 1):]
    return [BEFORE_START] * (n - 1 - len(tail)) + tail


def random_sequence(rng: random.Random, vocab: int) -> list[int]:
    """Tokens with many EOS and 0 among them (both end a segment), up to 40 long."""
    return [rng.choice([0, EOS, EOS, 5]) if rng.random() < 0.3 else rng.randrange(vocab)
            for _ in range(rng.randrange(1, 40))]


def ids_in_chunks(spec: NgramSpec, seq: list[int], cuts: list[int]) -> torch.Tensor:
    """ids of ``seq`` computed chunk by chunk, each chunk given only the history the previous ones leave."""
    out, bounds = [], [0, *cuts, len(seq)]
    for lo, hi in zip(bounds, bounds[1:]):
        history = torch.tensor([history_after(seq[:lo], spec.neighbors)])
        out.append(spec.ids(windows(history, torch.tensor(seq[lo:hi]), torch.tensor([0, hi - lo]))))
    return torch.cat(out)


def test_ids_match_the_reference_whole_and_in_chunks(lite):
    config, _ = lite
    spec, rng = config.ngram, random.Random(0)
    for _ in range(200):
        seq = random_sequence(rng, config.vocab_size)
        expected = torch.tensor(ref.ngram_rows(config, seq))
        cuts = sorted(rng.sample(range(1, len(seq)), min(3, len(seq) - 1))) if len(seq) > 1 else []
        assert torch.equal(ids_in_chunks(spec, seq, []), expected), seq
        assert torch.equal(ids_in_chunks(spec, seq, cuts), expected), (seq, cuts)


def test_eos_rules():
    spec = NgramSpec(ratio=3, neighbors=3, splits=1, hash_vocab=100, eos_ids=(EOS,))
    m2, m3 = spec.table_sizes()

    def ids(seq):
        return spec.ids(windows(torch.full((1, 2), BEFORE_START), torch.tensor(seq), torch.tensor([0, len(seq)])))

    got = ids([7, 8, EOS, 9, 10]).tolist()
    assert got[0] == [7, 7]  # the sequence start: the token alone
    assert got[2] == [(EOS + 8 * (100 % m2)) % m2, (EOS + 8 * 100 % m3 + 7 * (100 ** 2 % m3)) % m3]  # EOS with its history
    assert got[3] == [9, 9]  # the history stops after an EOS
    assert got[4][0] == (10 + 9 * 100) % m2
    assert ids([7, 0, 9])[1].tolist() == [0, 0] and ids([7, 0, 9])[2].tolist() == [9, 9]  # 0: no ids, a boundary


def test_ignored_ids_read_as_zero_and_keep_the_plain_sum():
    spec = NgramSpec(ratio=3, neighbors=3, splits=2, hash_vocab=100, eos_ids=(EOS,), ignored_ids=(50,))
    got = spec.ids(windows(torch.full((1, 2), BEFORE_START), torch.tensor([7, 50, 9]), torch.tensor([0, 3])))
    assert got[1].tolist() == [0] * 4 and got[2].tolist() == [9] * 4
    word, extra = torch.ones(3, 4), torch.full((3, 4), 4.0)
    mixed = spec.mix(torch.tensor([7, 50, 9]), word, extra)
    assert mixed[:, 0].tolist() == [1.0, 5.0, 1.0]  # (1 + 4) / (1 + 4 tables), except the ignored token


def test_windows_of_several_requests_at_once(lite):
    config, _ = lite
    spec, rng = config.ngram, random.Random(1)
    seqs = [random_sequence(rng, config.vocab_size) for _ in range(7)]
    starts = [rng.randrange(len(s)) for s in seqs]
    history = torch.tensor([history_after(s[:k], spec.neighbors) for s, k in zip(seqs, starts)])
    chunk = torch.tensor([t for s, k in zip(seqs, starts) for t in s[k:]])
    qsl = torch.tensor([0, *torch.tensor([len(s) - k for s, k in zip(seqs, starts)]).cumsum(0).tolist()])
    expected = torch.cat([torch.tensor(ref.ngram_rows(config, s))[k:] for s, k in zip(seqs, starts)])
    assert torch.equal(spec.ids(windows(history, chunk, qsl)), expected)


def test_lookup_and_mix_equal_the_reference_embedding(lite):
    config, w = lite
    spec = config.ngram
    seq = [5, 9, EOS, 700, 12, 0, 33, EOS, EOS, 4]
    ids = spec.ids(windows(torch.full((1, spec.history_len), BEFORE_START), torch.tensor(seq), torch.tensor([0, len(seq)])))
    table = torch.cat([w[spec.table_name(e)] for e in range(spec.num_tables)])
    projection = torch.cat([w[spec.projection_name(e)] for e in range(spec.num_tables)], dim=1)
    summed = NgramLookup(spec)(ids, lambda rows: table[rows], projection)
    got = spec.mix(torch.tensor(seq), w["model.embed_tokens.weight"][torch.tensor(seq)], summed)
    torch.testing.assert_close(got, ref.embedding(config, w, seq), rtol=1e-5, atol=1e-5)


def test_the_ngram_part_dominates_the_layer0_input(lite):
    """A model that drops the n-gram part reads a very different input (the logits then differ by nats)."""
    config, w = lite
    seq = list(range(40, 80))
    with_ngram = ref.embedding(config, w, seq)
    plain = w["model.embed_tokens.weight"][torch.tensor(seq)]
    cos = torch.nn.functional.cosine_similarity(with_ngram, plain, dim=-1)
    assert cos.abs().max() < 0.5
    logits = ref.forward(config, w, seq).log_softmax(-1)
    plain_config = LongcatConfig(**{**config.__dict__, "ngram": None})
    plain_logits = ref.forward(plain_config, w, seq).log_softmax(-1)
    targets = torch.tensor(seq[1:] + [0])
    drop = (logits.gather(1, targets[:, None]) - plain_logits.gather(1, targets[:, None])).abs().mean()
    assert drop > 1.0, drop


@pytest.mark.parametrize("preset", ["lite", "lite-oe"])
def test_presets_spell_the_config_and_tensors(preset, tmp_path):
    ckpt = write_checkpoint(tmp_path / preset, preset)
    raw = json.loads((ckpt / "config.json").read_text())
    config = LongcatConfig.from_dict(raw)
    spelling = "oe" if preset == "lite-oe" else "ngram"
    assert config.ngram.spelling == spelling and config.ngram.num_tables == 9
    assert raw["architectures"] == ([LITE_ARCHITECTURE] if spelling == "ngram" else ["LongcatCausalLM"])
    names = set(json.loads((ckpt / "model.safetensors.index.json").read_text())["weight_map"])
    assert names == set(expected_tensors(config, include_mtp=True))
    table = "model.oe_embed_tokens3.weight" if spelling == "oe" else "model.ngram_embeddings.embedders.3.weight"
    assert table in names and expected_tensors(config)[table] == (config.ngram.table_sizes()[3], 32)
    assert min(config.ngram.table_sizes()) % 64 and config.hidden_size % 128


def test_config_spellings():
    base = hub_config("tiny", 1024)
    lite = {**base, "ngram_vocab_size_ratio": 4, "emb_neighbor_num": 3, "emb_split_num": 2}
    oe = {**base, "oe_vocab_size_ratio": 4, "oe_neighbor_num": 3, "oe_split_num": 2}
    assert NgramSpec.from_config(lite).table_sizes() == NgramSpec.from_config(oe).table_sizes()
    assert NgramSpec.from_config({**lite, **oe}).spelling == "ngram"  # both, agreeing
    with pytest.raises(ValueError, match="both spellings are set and disagree.*emb_neighbor_num=3.*oe_neighbor_num=4"):
        NgramSpec.from_config({**lite, **oe, "oe_neighbor_num": 4})
    with pytest.raises(ValueError, match=r"'ngram_vocab_size_ratio' is set but \['emb_split_num'\] missing"):
        NgramSpec.from_config({**lite, "emb_split_num": None})
    with pytest.raises(ValueError, match="neighbor_num >= 2"):
        NgramSpec.from_config({**lite, "emb_neighbor_num": 1})
    assert NgramSpec.from_config(base) is None
    assert NgramSpec.from_config({**lite, "text_vocab_size": 500}).hash_vocab == 500


def test_slot_tokens_grow_skip_padding_and_read_before_start():
    slots = SlotTokens()
    assert slots.read(torch.tensor([3]), torch.tensor([0])).tolist() == [BEFORE_START]  # nothing written yet
    slots.write(torch.tensor([5, -1, 2]), torch.tensor([50, 99, 20]))  # -1: an engine's padding row
    slots.write(torch.tensor([40]), torch.tensor([400]))  # grows
    got = slots.read(torch.tensor([[5, 2], [40, 7], [5, 1000]]), torch.tensor([[0, 1], [9, 3], [-1, 2]]))
    assert got.tolist() == [[50, 20], [400, BEFORE_START], [BEFORE_START, BEFORE_START]]
    assert positions_before(torch.tensor([0, 5]), 3).tolist() == [[-3, -2, -1], [2, 3, 4]]


def test_table_shards_and_projections_load_into_their_rows_and_columns():
    spec = NgramSpec(ratio=1, neighbors=3, splits=1, hash_vocab=10, eos_ids=(EOS,))  # tables of 11 and 13 rows
    tables = [torch.arange(11.0)[:, None].repeat(1, 2), 100 + torch.arange(13.0)[:, None].repeat(1, 2)]
    shards = [torch.zeros(12, 2), torch.zeros(12, 2)]  # two ranks: rows [0, 12) and [12, 24)
    for rank, shard in enumerate(shards):
        for e, table in enumerate(tables):
            load_table_shard(shard, table, e, spec, 12 * rank, 12 * rank + 12)
    assert torch.equal(torch.cat(shards), torch.cat(tables))
    projection = torch.zeros(4, 4)
    for e in range(2):
        load_projection(projection, torch.full((4, 2), float(e + 1)), e)
    assert projection[0].tolist() == [1, 1, 2, 2]
