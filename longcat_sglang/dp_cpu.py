"""SGLang's DP attention on the CPU path (``--device cpu --attention-backend torch_native``).

Without ``SGLANG_USE_CPU_ENGINE=1`` (which this package does not use) SGLang's ``is_cpu()`` is False, so
on this path its DP-attention code takes the branches it takes on a GPU, and stops in four places:
  1. ``ForwardBatch.prepare_mlp_sync_batch`` (``model_executor/forward_batch_info.py``, 0.5.23 line 1948)
     stages the DP ranks' token counts in pinned memory unless its module flag ``_is_cpu`` is set
     (``torch.tensor(..., pin_memory=True)``: "Found no NVIDIA driver on your system");
  2. it pads each DP rank's batch for the gather in ``_pad_inputs_to_size`` (line 2013), asking the
     attention backend for the sequence length of a padding request: ``get_cpu_graph_seq_len_fill_value``
     where ``_is_cpu``, else ``get_cuda_graph_seq_len_fill_value``. ``TorchNativeAttnBackend`` has
     neither: the base class raises ``NotImplementedError`` for the second
     (``layers/attention/base_attn_backend.py`` line 286), on every device;
  3. ``dp_gather_*`` / ``dp_scatter`` copy rows with ``memcpy_triton`` (``layers/dp_attention.py`` line
     644, ``memcpy_func = memcpy_cpu if _is_cpu else memcpy_triton``), a Triton kernel;
  4. the MAX_LEN gather calls ``GroupCoordinator.all_gather_into_tensor`` (``distributed/parallel_state.py``
     line 1363), which goes through a custom op registered for the GPU unless the module's ``_is_cpu`` is
     set ("Could not run 'sglang::reg_all_gather_into_tensor' with arguments from the 'CPU' backend"); its
     ``all_reduce`` picks the CPU path by the tensor's device. (``reduce_scatter_tensor``, line 1134, does
     the same; the gathers call it only where attention TP is wider than one rank, --tp > DP size, which
     has not run here: docs/multinode.md.)
For 1 and 2 ``cpu_batch_branches`` runs ``prepare_mlp_sync_batch`` of a CPU batch with the module's
``_is_cpu`` set (its two uses there are exactly these two CPU branches), and torch_native answers the
CPU question with 1, the value SGLang's CPU backends and its GPU ones (flashinfer, triton, fa3) use (a
padding request reads one cached slot; its row is dropped). For 3 the Triton interpreter runs SGLang's
kernel on CPU tensors (``TRITON_INTERPRET=1``, set before the scheduler processes start), so the kernel
a GPU runs is the one the CPU tests run. For 4 ``all_gather_on_cpu_tensors`` takes the group's own CPU
branch for CPU tensors, as its ``all_reduce`` does. Each applies only where longcat_sglang serves the model.
"""

import os

from longcat_sglang import serving


def triton_interpreter_for_cpu_dp_attention(args, *rest, **kwargs):
    """BEFORE ``prepare_server_args``: with ``--device cpu`` and DP attention, SGLang's Triton kernels run
    in the Triton interpreter (the scheduler processes inherit the environment)."""
    from longcat_sglang.plugin import cpu_launch_of_ours, flag_value

    dp_attention = "--enable-dp-attention" in args or int(flag_value(args, ("--attn-dp-size",)) or 1) > 1
    if dp_attention and cpu_launch_of_ours(args):
        os.environ.setdefault("TRITON_INTERPRET", "1")
    return None


def cpu_batch_branches(prepare, batch, model_runner, *args, **kwargs):
    """AROUND ``ForwardBatch.prepare_mlp_sync_batch`` (runs only with DP attention or a gathered MLP)."""
    if batch.seq_lens.device.type != "cpu" or not serving.serves_this_process():
        return prepare(batch, model_runner, *args, **kwargs)
    from sglang.srt.model_executor import forward_batch_info

    forward_batch_info._is_cpu = True
    try:
        return prepare(batch, model_runner, *args, **kwargs)
    finally:
        forward_batch_info._is_cpu = False


def all_gather_on_cpu_tensors(all_gather, group, output, input, *args, **kwargs):
    """AROUND ``GroupCoordinator.all_gather_into_tensor``: CPU tensors go to ``_all_gather_into_tensor``,
    which the custom op and SGLang's CPU branch call (gloo's all-gather here)."""
    if not input.is_cpu or not serving.serves_this_process():
        return all_gather(group, output, input, *args, **kwargs)
    return group._all_gather_into_tensor(output, input)


def torch_native_padding_seq_len(backend) -> int:
    """``TorchNativeAttnBackend.get_cpu_graph_seq_len_fill_value``, which 0.5.23 lacks (it is added as a
    method: a hook cannot wrap an attribute that does not exist). Only ``cpu_batch_branches`` reaches it,
    and SGLang's own CPU engine, where its absence is an ``AttributeError``."""
    return 1


def add_torch_native_padding_seq_len() -> None:
    from sglang.srt.layers.attention.torch_native_backend import TorchNativeAttnBackend

    if not hasattr(TorchNativeAttnBackend, "get_cpu_graph_seq_len_fill_value"):
        TorchNativeAttnBackend.get_cpu_graph_seq_len_fill_value = torch_native_padding_seq_len
