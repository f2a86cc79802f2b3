"""SGLang's EAGLE / NEXTN speculative worker on the CPU path (``--attention-backend torch_native``).

SGLang 0.5.23 runs EAGLE only on attention backends it has draft backends for; ``torch_native`` is not
one of them, so ``--speculative-algorithm NEXTN`` stops the CPU server at start. These hooks fill the gap
for the chain drafts LongCat-Flash's recipe uses (``--speculative-eagle-topk 1``); each applies only
while ``torch_native`` is the backend in use.
"""

import copy

import torch

from sglang.srt.runtime_context import attention_backends

TORCH_NATIVE = "torch_native"


def torch_native_draft_extend_backend(create, factory, *args, **kwargs):
    """AROUND ``DraftBackendFactory.create_draft_extend_backend``: the draft-extend pass (the draft model
    reading the verified tokens) is a plain causal extend, which SGLang's torch_native backend computes."""
    configured = factory.draft_attn_backend or attention_backends()[0]
    if configured != TORCH_NATIVE:
        return create(factory, *args, **kwargs)
    from sglang.srt.layers.attention.torch_native_backend import TorchNativeAttnBackend

    backend = TorchNativeAttnBackend(factory.draft_model_runner)
    backend.prefill_attention_backend_str = backend.decode_attention_backend_str = TORCH_NATIVE
    return backend


def torch_native_target_verify(forward_extend, backend, q, k, v, layer, forward_batch, *args, **kwargs):
    """AROUND ``TorchNativeAttnBackend.forward_extend``: the target's verify pass over a chain draft is a
    causal extend of ``draft_token_num`` tokens after each request's ``seq_lens`` cached ones. SGLang's
    verify batch carries no extend lengths (its other backends read a tree mask instead), so they are
    filled in on a shallow copy of the batch for this call."""
    if not forward_batch.forward_mode.is_target_verify():
        return forward_extend(backend, q, k, v, layer, forward_batch, *args, **kwargs)
    batch = copy.copy(forward_batch)
    num_draft = forward_batch.spec_info.draft_token_num
    batch.extend_prefix_lens = forward_batch.seq_lens
    batch.extend_seq_lens = torch.full_like(forward_batch.seq_lens, num_draft)
    batch.seq_lens = forward_batch.seq_lens + num_draft
    return forward_extend(backend, q, k, v, layer, batch, *args, **kwargs)
