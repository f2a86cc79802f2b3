"""Flash-Lite's history in vLLM through the cases vLLM's CPU platform never schedules for MLA models
(chunked prefill, prefix-cache hits: platforms/cpu.py turns both off), on vLLM's own MLA metadata classes.

A play of forwards as vLLM's scheduler would send them, blocks of 4: request A prefilled in chunks, request
B hitting A's first two blocks in a later step, then both decoding (decodes first, as vLLM orders them).
Each forward's windows (longcat_vllm.ngram.NgramEmbedding._windows, the model's own code) must equal the
windows of the whole sequences."""

from types import SimpleNamespace

import torch
from vllm.model_executor.layers.attention.mla_attention import (
    MLACommonDecodeMetadata, MLACommonMetadata, MLACommonPrefillMetadata)

from longcat_common.ngram import BEFORE_START, NgramSpec, SlotTokens, windows
from longcat_vllm.ngram import NgramEmbedding

BLOCK = 4
EOS = 2
A = [1, 40, 41, 42, 43, EOS, 44, 45, 46, 47, 48, 49, EOS, 50, 51]
B = A[:8] + [60, 61, 62, 63]
TABLES = {"A": [5, 2, 9, 7], "B": [5, 2, 3, 4]}  # B shares A's first two blocks (prefix-cache hit)
SEQS = {"A": A, "B": B}


def expected(name: str, lo: int, hi: int, hist: int) -> torch.Tensor:
    seq = torch.tensor(SEQS[name])
    full = windows(torch.full((1, hist), BEFORE_START), seq, torch.tensor([0, len(seq)]))
    return full[lo:hi]


def forward(model, chunks: list[tuple[str, int, int]], num_decodes: int) -> torch.Tensor:
    """One forward of (request, first position, end) chunks, the first ``num_decodes`` of them decodes."""
    ids, pos, slots, qsl = [], [], [], [0]
    for name, lo, hi in chunks:
        ids += SEQS[name][lo:hi]
        pos += list(range(lo, hi))
        slots += [TABLES[name][p // BLOCK] * BLOCK + p % BLOCK for p in range(lo, hi)]
        qsl.append(qsl[-1] + hi - lo)
    tables = torch.tensor([TABLES[name] for name, _, _ in chunks])
    qsl_t = torch.tensor(qsl)
    decode = MLACommonDecodeMetadata(block_table=tables[:num_decodes], seq_lens=torch.tensor(
        [hi for _, _, hi in chunks[:num_decodes]]), dcp_tot_seq_lens=None) if num_decodes else None
    prefill = MLACommonPrefillMetadata(block_table=tables[num_decodes:], query_start_loc=qsl_t[num_decodes:] - qsl[num_decodes],
                                       max_query_len=max(hi - lo for _, lo, hi in chunks)) \
        if num_decodes < len(chunks) else None
    metadata = MLACommonMetadata(num_reqs=len(chunks), max_query_len=max(hi - lo for _, lo, hi in chunks),
                                 max_seq_len=max(hi for _, _, hi in chunks), num_actual_tokens=len(ids),
                                 query_start_loc=qsl_t, slot_mapping=torch.tensor(slots), num_decodes=num_decodes,
                                 num_decode_tokens=num_decodes, num_prefills=len(chunks) - num_decodes,
                                 prefill=prefill, decode=decode)
    return NgramEmbedding._windows(model, torch.tensor(ids), torch.tensor(pos), metadata)


def test_history_through_chunks_prefix_hits_and_decodes():
    spec = NgramSpec(ratio=2, neighbors=4, splits=2, hash_vocab=100, eos_ids=(EOS,))
    # sized as in a worker: vLLM's cache config holds the KV cache's blocks (10 here)
    model = SimpleNamespace(spec=spec, slot_tokens=SlotTokens(), block_size=BLOCK,
                            cache_config=SimpleNamespace(num_gpu_blocks=10))
    hist = spec.history_len
    plays = [
        ([("A", 0, 6)], 0),  # A's first chunk
        ([("A", 6, 11)], 0),  # A's second chunk: history from the first chunk's slots
        ([("A", 11, 14), ("B", 8, 11)], 0),  # A's last chunk; B starts after 8 cached tokens (A's blocks 5, 2)
        ([("A", 14, 15), ("B", 11, 12)], 2),  # decodes
    ]
    for chunks, num_decodes in plays:
        got = forward(model, chunks, num_decodes)
        want = torch.cat([expected(name, lo, hi, hist) for name, lo, hi in chunks])
        assert torch.equal(got, want), (chunks, got, want)
        assert torch.equal(spec.ids(got), spec.ids(want))
    assert model.slot_tokens.reserved and model.slot_tokens.table.numel() == 10 * BLOCK + 1
