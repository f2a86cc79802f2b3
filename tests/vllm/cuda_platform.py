"""vLLM's platform answering as CUDA, for the interpreter tier (tests/vllm/triton_kernels_run.py)."""

import contextlib
from unittest import mock

import torch

from vllm.platforms import current_platform

# What vLLM asks of the platform on the way to TritonExperts; everything else stays the CPU platform's.
CUDA_PLATFORM = dict(is_cpu=lambda: False, is_cuda=lambda: True, is_cuda_alike=lambda: True,
                     supports_fp8=lambda: True, fp8_dtype=lambda: torch.float8_e4m3fn)


@contextlib.contextmanager
def as_cuda():
    """current_platform answering as CUDA; no accelerator caches to empty (the workspace grows on the CPU)."""
    with mock.patch.multiple(current_platform, **CUDA_PLATFORM), \
            mock.patch.object(torch.accelerator, "empty_cache", lambda: None):
        yield
