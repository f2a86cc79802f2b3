"""SGLang's EAGLE / NEXTN speculative worker on the CPU path (``--device cpu --attention-backend torch_native``).

SGLang 0.5.23 stops a CPU server started with ``--speculative-algorithm NEXTN`` in four places, all in its
own worker, not in the model (docs/mtp.md has the details):
  1. no draft-extend attention backend for ``torch_native`` (``DraftBackendFactory``);
  2. the target's verify pass on ``torch_native`` reads extend lengths the verify batch does not carry;
  3. the worker's bookkeeping kernels (KV slot assignment, bonus tokens, ...) are Triton kernels, or ops
     of sgl-kernel's CPU build (only with ``SGLANG_USE_CPU_ENGINE=1``, which this package avoids);
  4. draft-tree construction and greedy verification have no CPU path besides sgl-kernel's.
Hooks 1, 2 and 4 below (4 routes to SGLang's Triton versions of those kernels, written for XPU), and
for 3 and 4 the Triton interpreter, which runs SGLang's Triton kernels on CPU tensors
(``TRITON_INTERPRET=1``, set by ``triton_interpreter_for_cpu_speculation`` before the scheduler
processes start). Each applies only where longcat_sglang serves the model (serving.py), on CPU tensors /
the torch_native backend, and only the chain drafts of LongCat-Flash's recipe (``--speculative-eagle-topk
1``) are verified.
"""

import copy
import logging
import os

import torch

from longcat_sglang import serving
from sglang.srt.runtime_context import attention_backends

logger = logging.getLogger(__name__)

TORCH_NATIVE = "torch_native"


def triton_interpreter_for_cpu_speculation(args, *rest, **kwargs):
    """BEFORE ``prepare_server_args``: with ``--device cpu`` and a speculative algorithm, SGLang's Triton
    kernels run in the Triton interpreter (the scheduler processes inherit the environment). Without
    speculation nothing changes."""
    from longcat_sglang.plugin import cpu_launch_of_ours, flag_value

    if flag_value(args, ("--speculative-algorithm",)) and cpu_launch_of_ours(args):
        if flag_value(args, ("--speculative-eagle-topk",)) not in (None, "1"):
            raise ValueError("longcat-flash-plugins: speculative decoding on CPU supports chain drafts only "
                             "(--speculative-eagle-topk 1)")
        os.environ.setdefault("TRITON_INTERPRET", "1")  # logged by the scheduler (logging is not set up yet)
    return None


def torch_native_draft_extend_backend(create, factory, *args, **kwargs):
    """AROUND ``DraftBackendFactory.create_draft_extend_backend``: the draft-extend pass (the draft model
    reading the verified tokens) is a plain causal extend, which SGLang's torch_native backend computes."""
    configured = factory.draft_attn_backend or attention_backends()[0]
    if configured != TORCH_NATIVE or not serving.serves_this_process():
        return create(factory, *args, **kwargs)
    from sglang.srt.layers.attention.torch_native_backend import TorchNativeAttnBackend

    backend = TorchNativeAttnBackend(factory.draft_model_runner)
    backend.prefill_attention_backend_str = backend.decode_attention_backend_str = TORCH_NATIVE
    logger.info("longcat-flash-plugins: speculative decoding on CPU: draft extend on torch_native, SGLang's "
                "Triton kernels in the Triton interpreter (TRITON_INTERPRET=%s)", os.environ.get("TRITON_INTERPRET"))
    return backend


def torch_native_target_verify(forward_extend, backend, q, k, v, layer, forward_batch, *args, **kwargs):
    """AROUND ``TorchNativeAttnBackend.forward_extend``: the target's verify pass over a chain draft is a
    causal extend of ``draft_token_num`` tokens after each request's ``seq_lens`` cached ones. SGLang's
    verify batch carries no extend lengths (its other backends read a tree mask instead), so they are
    filled in on a shallow copy of the batch for this call."""
    if not forward_batch.forward_mode.is_target_verify() or not serving.serves_this_process():
        return forward_extend(backend, q, k, v, layer, forward_batch, *args, **kwargs)
    batch = copy.copy(forward_batch)
    num_draft = forward_batch.spec_info.draft_token_num
    batch.extend_prefix_lens = forward_batch.seq_lens
    batch.extend_seq_lens = torch.full_like(forward_batch.seq_lens, num_draft)
    batch.seq_lens = forward_batch.seq_lens + num_draft
    return forward_extend(backend, q, k, v, layer, batch, *args, **kwargs)


def triton_tree_on_cpu(kernel_func, *args, **kwargs):
    """AROUND ``spec_tree.build_tree_kernel_efficient_func``: SGLang builds the draft tree with CUDA / NPU /
    sgl-kernel-CPU ops, none of which exist here; its Triton version (written for XPU) runs on CPU
    tensors under the Triton interpreter."""
    from sglang.kernels.ops.speculative import spec_tree

    parent_list = kwargs.get("parent_list", args[0] if args else None)
    if parent_list is None or parent_list.device.type != "cpu" or not serving.serves_this_process():
        return kernel_func(*args, **kwargs)
    return spec_tree.sgl_build_tree_kernel_triton(*args, **kwargs)


def triton_verify_on_cpu(kernel_func, *args, topk: int = -1, **kwargs):
    """AROUND ``spec_tree.verify_tree_greedy_func`` (called with keywords): as above, for the greedy
    acceptance of the draft tokens."""
    from sglang.kernels.ops.speculative import spec_tree

    if args or kwargs["predicts"].device.type != "cpu" or not serving.serves_this_process():
        return kernel_func(*args, topk=topk, **kwargs)
    spec_tree.verify_tree_greedy_triton(**kwargs)
    return kwargs["predicts"], kwargs["accept_index"], kwargs["accept_token_num"]
