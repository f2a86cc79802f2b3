"""A fix to the Triton interpreter for the interpreted tier (test-only): ``tl.dot`` on bf16 operands.

Triton 3.8's interpreter stores bf16 as its uint16 bit patterns (``runtime/interpreter.py``, ``np_types``)
and ``create_dot`` converts only fp8 operands before ``np.matmul``, so a bf16 dot multiplies the bit
patterns as integers (values ~1e10 for inputs ~1). A GPU's bf16 MMA multiplies the bf16 values exactly
and accumulates in fp32: widening the operands to fp32 (exact) gives that.
"""

import numpy as np
import pytest
import triton.language as tl
from triton.runtime import interpreter


def _fp32(handle: interpreter.TensorHandle) -> interpreter.TensorHandle:
    if handle.dtype.scalar != tl.bfloat16:
        return handle
    return interpreter.TensorHandle((handle.data.astype(np.uint32) << 16).view(np.float32), tl.float32)


def fix_bf16_dot(mp: pytest.MonkeyPatch) -> None:
    builder, dot = interpreter.interpreter_builder, interpreter.interpreter_builder.create_dot
    mp.setattr(builder, "create_dot", lambda a, b, d, *args: dot(_fp32(a), _fp32(b), d, *args))
