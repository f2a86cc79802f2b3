"""Flash-Lite's n-gram embedding for vLLM: longcat_common.ngram's rule on vLLM's vocabulary-parallel embedding.

Each request's history (the n-1 tokens before its first token of this forward) is read from the KV-cache
slots of those positions: every forward writes its tokens into a token-per-slot table at the slots vLLM
writes their KV to (the MLA metadata's ``slot_mapping``) and reads the history through the request's
block table. Whatever vLLM does with the cache, the table follows: a chunked prefill's next chunk and a
decode step read the slots the earlier forwards wrote; a prefix-cache hit reads the blocks of the request
that computed them (vLLM shares a block only for the same tokens); a preempted request is recomputed
into new slots; speculative decoding writes every draft, but the next forward starts after the last
accepted token, so its history is accepted tokens only (a rejected draft's slot is rewritten before any
history reaches it). KV the engine did not compute (a KV connector's transfer) carries no tokens: see
docs/lite.md. The table is sized to the worker's KV cache (``cache_config.num_gpu_blocks``) on the first
forward that has one: no host read per step.
"""

import torch
from torch import nn

from vllm.forward_context import get_forward_context, is_forward_context_available
from vllm.model_executor.layers.attention.mla_attention import MLACommonMetadata
from vllm.model_executor.layers.vocab_parallel_embedding import VocabParallelEmbedding

from longcat_common.ngram import (BEFORE_START, NgramLookup, NgramSpec, SlotTokens, load_projection,
                                  load_table_shard, positions_before, windows)


def histories(slot_tokens: SlotTokens, metadata: MLACommonMetadata, positions: torch.Tensor, hist: int,
              block_size: int) -> torch.Tensor:
    """[R, hist]: the tokens at the hist positions before each request's first position of this forward
    (oldest first), read through its block table (decode requests first, then prefills, as vLLM orders them)."""
    num_reqs = metadata.num_reqs
    back = positions_before(positions[metadata.query_start_loc[:num_reqs].long()], hist)
    blocks = torch.cat([m.block_table for m in (metadata.decode, metadata.prefill) if m is not None])
    at = back.clamp(min=0)
    slots = blocks[torch.arange(num_reqs, device=at.device)[:, None], at // block_size].long()
    return slot_tokens.read(slots * block_size + at % block_size, back)


def mla_metadata() -> MLACommonMetadata | None:
    """This forward's MLA metadata (every LongCat attention layer shares one KV-cache group); None in the
    engine's profile and warm-up runs without a cache."""
    if not is_forward_context_available():
        return None
    metadata = get_forward_context().attn_metadata
    if isinstance(metadata, list):  # micro-batches
        raise NotImplementedError("longcat-flash-plugins: Flash-Lite with micro-batching (DBO) is not supported")
    if not metadata:
        return None
    return next((m for m in metadata.values() if isinstance(m, MLACommonMetadata)), None)


class NgramEmbedding(nn.Module):
    """word embedding averaged with the n-gram tables' projections (longcat_common.ngram); ``tables`` is the
    checkpoint's tables concatenated (rows split over TP ranks), ``projection`` the projections side by side."""

    def __init__(self, spec: NgramSpec, word: VocabParallelEmbedding, hidden_size: int, cache_config, prefix: str):
        super().__init__()
        self.spec, self.word, self.cache_config, self.block_size = spec, word, cache_config, cache_config.block_size
        dim = spec.table_dim(hidden_size)
        self.tables = VocabParallelEmbedding(spec.table_offsets()[-1], dim, prefix=f"{prefix}.tables")
        self.tables.weight.weight_loader = self._load_table
        self.projection = nn.Parameter(torch.empty(hidden_size, spec.num_tables * dim), requires_grad=False)
        self.projection.weight_loader = lambda param, tensor, e: load_projection(param.data, tensor, e)
        self.lookup = NgramLookup(spec)
        self.slot_tokens = SlotTokens()

    def _load_table(self, param: torch.Tensor, table: torch.Tensor, e: int) -> None:
        shard = self.tables.shard_indices
        load_table_shard(param.data, table, e, self.spec, shard.org_vocab_start_index, shard.org_vocab_end_index)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        metadata = mla_metadata()
        ids = self.spec.ids(self._windows(input_ids, positions, metadata))
        summed = self.lookup(ids, self.tables, self.projection)
        return self.spec.mix(input_ids, self.word(input_ids), summed)

    def _windows(self, input_ids: torch.Tensor, positions: torch.Tensor,
                 metadata: MLACommonMetadata | None) -> torch.Tensor:
        """[T, n]: each token's history (from the slots of its request's earlier positions), then the token."""
        hist = self.spec.history_len
        if metadata is None:  # no KV cache: every row a sequence start
            return torch.cat([torch.full((input_ids.shape[0], hist), BEFORE_START, dtype=input_ids.dtype,
                                         device=input_ids.device), input_ids[:, None]], dim=1)
        tokens = input_ids[:metadata.num_actual_tokens]
        if not self.slot_tokens.reserved and self.cache_config.num_gpu_blocks:  # the worker's KV cache size
            self.slot_tokens.reserve(self.cache_config.num_gpu_blocks * self.block_size, input_ids.device)
        out = windows(histories(self.slot_tokens, metadata, positions, hist, self.block_size), tokens,
                      metadata.query_start_loc[:metadata.num_reqs + 1].long())
        self.slot_tokens.write(metadata.slot_mapping[:metadata.num_actual_tokens], tokens)
        padding = input_ids.shape[0] - tokens.shape[0]
        if padding:
            out = torch.cat([out, torch.full((padding, hist + 1), 0, dtype=out.dtype, device=out.device)])
        return out
