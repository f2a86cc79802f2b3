"""The two uneven collectives vLLM's CPU communicator lacks, for data parallelism on the CPU backend.

With ``--data-parallel-size`` > 1, vLLM's MoE gathers every DP rank's tokens before the experts and
scatters the sums back after (``prepare_finalize/naive_dp_ep.py`` -> ``all2all.AgRsAll2AllManager``,
which the CPU communicator uses for every all2all backend). Ranks hold different token counts, so it
calls ``all_gatherv`` / ``reduce_scatterv``, which ``CpuCommunicator`` does not override: the base class
raises ``NotImplementedError`` (vLLM 0.32 ``base_device_communicator.py:296`` and ``:334``) on the first
forward. Here they are built from the two collectives the CPU communicator has (``all_gather``,
``all_reduce``): pad every rank's rows to the largest count, gather, drop the padding; reduce the whole
tensor and keep this rank's rows.

Installed (``supply_uneven_collectives``) by our model class in the worker process that builds it, so a
process serving another model keeps vLLM's communicator as it is.
"""

import torch


def all_gatherv(self, input_: torch.Tensor | list[torch.Tensor], dim: int = 0,
                sizes: list[int] | None = None) -> torch.Tensor | list[torch.Tensor]:
    """Each rank's ``sizes[rank]`` rows (dim 0) of every tensor, concatenated in rank order."""
    if dim != 0 or sizes is None:
        raise ValueError(f"longcat-flash-plugins: CPU all_gatherv takes dim 0 and sizes (got dim={dim}, sizes={sizes})")
    tensors = input_ if isinstance(input_, list) else [input_]
    most = max(sizes)
    out = []
    for t in tensors:
        padded = torch.cat([t, t.new_zeros((most - t.shape[0], *t.shape[1:]))]) if t.shape[0] < most else t
        gathered = self.all_gather(padded.contiguous(), dim=0)
        out.append(torch.cat([gathered[r * most:r * most + n] for r, n in enumerate(sizes)]))
    return out if isinstance(input_, list) else out[0]


def reduce_scatterv(self, input_: torch.Tensor, dim: int = -1, sizes: list[int] | None = None) -> torch.Tensor:
    """input_ [sum(sizes), ...] on every rank -> the sum over ranks of this rank's ``sizes[rank]`` rows."""
    if dim not in (0, -input_.dim()) or sizes is None:
        raise ValueError(f"longcat-flash-plugins: CPU reduce_scatterv takes dim 0 and sizes (got dim={dim}, sizes={sizes})")
    rank = torch.distributed.get_rank(self.device_group)
    start = sum(sizes[:rank])
    return self.all_reduce(input_.clone())[start:start + sizes[rank]].contiguous()


def supply_uneven_collectives() -> None:
    """Gives vLLM's ``CpuCommunicator`` the two methods (call on the CPU backend only, while our model is
    built in a worker). Methods it defines itself are kept."""
    from vllm.distributed.device_communicators.cpu_communicator import CpuCommunicator

    for name, method in (("all_gatherv", all_gatherv), ("reduce_scatterv", reduce_scatterv)):
        if name not in vars(CpuCommunicator):
            setattr(CpuCommunicator, name, method)
