"""Flash-Lite's n-gram embedding for SGLang: longcat_common.ngram's tables, lookup and mix, and each
request's token history kept per KV slot (docs/lite.md, "SGLang").

The history is a token per KV-cache slot, owned by the model: every forward writes its tokens at
``out_cache_loc`` after reading. The n-1 tokens before a request's first new token at position p0 are the
ones at its slots ``req_to_token[req, p0-n+1 .. p0-1]``: whatever wrote those slots (an earlier chunk, a
request sharing the radix prefix, a decode or an accepted verify step) ran this forward with that token.
SGLang's own machinery for this (``NgramEmbeddingManager``, a CUDA kernel run by the scheduler) is turned
off for our classes (``sglangs_token_table_off``).
"""

import copy

import torch
from torch import nn

from longcat_common.config import LongcatConfig
from longcat_common.ngram import NgramLookup, SlotTokens, load_projection, load_table_shard, positions_before, windows
from sglang.srt.layers.dp_attention import is_dp_attention_enabled
from sglang.srt.layers.vocab_parallel_embedding import VocabParallelEmbedding
from sglang.srt.model_executor.forward_batch_info import ForwardBatch
from sglang.srt.model_executor.forward_context import get_req_to_token_pool, get_token_to_kv_pool
from sglang.srt.runtime_context import get_spec
from sglang.srt.utils import add_prefix

def check_serving_options() -> None:
    """The options the per-slot history cannot follow, refused at build."""
    if get_spec().speculative_algorithm and (get_spec().speculative_eagle_topk or 1) > 1:
        raise ValueError("longcat-flash-plugins: Flash-Lite's n-gram embedding needs a draft chain: use "
                         f"--speculative-eagle-topk 1 (got {get_spec().speculative_eagle_topk}; a draft tree's "
                         "tokens are not consecutive positions)")


def tokens_per_request(forward_batch: ForwardBatch) -> torch.Tensor:
    """[R]: how many of ``input_ids`` belong to each request, in order (no host sync: CUDA graphs)."""
    mode, bs, num_tokens = forward_batch.forward_mode, forward_batch.batch_size, forward_batch.input_ids.shape[0]
    if mode.is_decode() or mode.is_target_verify():  # a token each, or a chain of draft tokens each
        counts, total = torch.full((bs,), num_tokens // bs, device=forward_batch.input_ids.device), num_tokens
    elif forward_batch.extend_seq_lens is not None:
        counts, total = forward_batch.extend_seq_lens, forward_batch.extend_num_tokens
    else:
        raise ValueError(f"longcat-flash-plugins: n-gram embedding: forward mode {mode.name} has no per-request "
                         "token counts")
    if total != num_tokens or forward_batch.out_cache_loc.shape[0] != num_tokens:
        raise ValueError(f"longcat-flash-plugins: n-gram embedding: {num_tokens} input tokens, {total} counted "
                         f"over the requests, {forward_batch.out_cache_loc.shape[0]} KV slots (padded batches "
                         "are not supported)")
    return counts.long()


class LongcatNgramEmbedding(nn.Module):
    """The tables concatenated as one vocabulary-parallel embedding (rows ``table_offsets()[-1]``, split over
    the ranks like the token embedding), the projections side by side [H, num_tables * dim] on every rank.
    Built as the model's ``ngram_embedding``: checkpoint.NGRAM_TABLES / NGRAM_PROJECTION, shard id = table."""

    def __init__(self, config: LongcatConfig, prefix: str):
        super().__init__()
        check_serving_options()
        self.spec = spec = config.ngram
        self.dim = dim = spec.table_dim(config.hidden_size)
        self.tables = VocabParallelEmbedding(spec.table_offsets()[-1], dim, prefix=add_prefix("tables", prefix),
                                             use_attn_tp_group=is_dp_attention_enabled())
        self.tables.weight.weight_loader = self.load_table
        self.projection = nn.Parameter(torch.empty(config.hidden_size, spec.num_tables * dim), requires_grad=False)
        self.projection.weight_loader = lambda param, tensor, e: load_projection(param.data, tensor, e)
        self.lookup = NgramLookup(spec)
        self.slot_tokens = SlotTokens()  # sized to the KV pool on the first forward

    def load_table(self, param: nn.Parameter, tensor: torch.Tensor, e: int) -> None:
        shard = self.tables.shard_indices
        load_table_shard(param.data, tensor, e, self.spec, shard.org_vocab_start_index, shard.org_vocab_end_index)

    def forward(self, input_ids: torch.Tensor, word: torch.Tensor, forward_batch: ForwardBatch) -> torch.Tensor:
        """input_ids [T], word [T, H] (the token embedding) -> the layer-0 input [T, H]."""
        if input_ids.shape[0] == 0:
            return word
        ids = self.spec.ids(self.windows(input_ids, forward_batch))
        ngram = self.lookup(ids, lambda rows: self.tables(rows.flatten()).view(*rows.shape, self.dim),
                            self.projection)
        return self.spec.mix(input_ids, word, ngram)

    def windows(self, input_ids: torch.Tensor, forward_batch: ForwardBatch) -> torch.Tensor:
        """[T, n]: each token's window, from the slots of its request's earlier positions; then this
        forward's tokens go into their slots."""
        if not self.slot_tokens.reserved:
            pool = get_token_to_kv_pool()
            self.slot_tokens.reserve(pool.size + pool.page_size, input_ids.device)
        counts = tokens_per_request(forward_batch)
        starts = torch.cumsum(counts, 0) - counts
        back = positions_before(forward_batch.positions[starts], self.spec.history_len)
        slots = get_req_to_token_pool().req_to_token[forward_batch.req_pool_indices.long()[:, None], back.clamp(min=0)]
        out = windows(self.slot_tokens.read(slots, back), input_ids, torch.cat([starts, counts.sum().view(1)]))
        self.slot_tokens.write(forward_batch.out_cache_loc, input_ids)
        return out


def sglangs_token_table_off(from_model, cls, *, model, model_config, **kwargs):
    """AROUND hook of ``NgramEmbeddingManager.from_model``: for our classes, SGLang's n-gram token table
    (filled by a CUDA kernel from the scheduler, read by its own NgramEmbedding layer) stays off; our model
    keeps the history itself. Other models get SGLang's manager as built."""
    from longcat_sglang.model import LongcatCausalLMBase

    if isinstance(model, LongcatCausalLMBase) and model_config.use_ngram_embedding:
        model_config = copy.copy(model_config)
        model_config.use_ngram_embedding, model_config.ngram_embedding_n = False, 0
    return from_model(cls, model=model, model_config=model_config, **kwargs)
