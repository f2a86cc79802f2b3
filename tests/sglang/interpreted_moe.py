"""Our MoE layer on SGLang's CUDA MoE path, its Triton kernels in the Triton interpreter (TRITON_INTERPRET=1;
run by test_triton_kernels.py in its own process, since ``triton.jit`` reads the switch at import).

Runs for real: our ``LongcatMoE`` built through the CUDA branch (``on_cuda=True``: SGLang picks its own
``UnquantizedFusedMoEMethod`` and the triton runner, FusedMoE out of place), its router and routing,
SGLang's StandardDispatcher, the runner's Python (``fused_experts_impl``, configs chosen as on an H100)
and its Triton kernels ``fused_moe_kernel`` (both GEMMs, skipping -1 ids) and, where SGLang picks it,
``moe_sum_reduce_triton``.
Stand-ins (tests/sglang/cuda_op_standins.py): sgl-kernel's ``moe_align_block_size`` and
``moe_sum_reduce`` and the JIT ``silu_and_mul``.
Patched: the module-level ``_is_cuda`` of the runner's two modules (so their CUDA branches run), the
method's dispatch pinned to ``forward_cuda``, the custom-op wrappers called directly (as SGLang does in
eager CUDA execution), the GPU name for the config lookup, and the torch.compile'd top-k sum run eagerly.
"""

import contextlib
import importlib
import json
import os

import pytest
import torch

from tests import oracle
from tests.sglang import cuda_op_standins
from tests.sglang.interpreter_bf16_dot import fix_bf16_dot

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("needs TRITON_INTERPRET=1 before Triton is imported (tests/sglang/test_triton_kernels.py)",
                allow_module_level=True)

from longcat_common.routing import add_identity, route_with_zero_experts  # noqa: E402
from longcat_sglang import model as sgl_model  # noqa: E402
from sglang.srt.layers.moe.moe_runner import MoeRunnerConfig  # noqa: E402
from sglang.srt.layers.moe.topk import StandardTopKOutput  # noqa: E402
from sglang.kernels.ops.moe import moe_align_small_numel  # noqa: E402
from sglang.srt import runtime_context  # noqa: E402
from sglang.srt.configs.model_config import ModelConfig  # noqa: E402
from sglang.srt.distributed import parallel_state  # noqa: E402
from sglang.srt.layers.quantization.fp8 import Fp8Config, Fp8MoEMethod  # noqa: E402
from sglang.srt.layers.quantization.unquant import UnquantizedFusedMoEMethod  # noqa: E402
from sglang.srt.model_loader.weight_utils import safetensors_weights_iterator  # noqa: E402
from sglang.srt.server_args import ServerArgs  # noqa: E402
from tests.sglang.test_expert_dispatch import EP, _dispatch  # noqa: E402
from tests.sglang.test_gpu_branch import _free_port  # noqa: E402

RUNNER = "sglang.srt.layers.moe.moe_runner.triton_utils."
fused_moe = importlib.import_module(RUNNER + "fused_moe")
align = importlib.import_module(RUNNER + "moe_align_block_size")
moe_config = importlib.import_module(RUNNER + "fused_moe_triton_config")
moe_kernels = importlib.import_module("sglang.kernels.ops.moe.fused_moe_triton_kernels")


def cuda_moe_path(mp: pytest.MonkeyPatch) -> None:
    """The triton runner's CUDA branches, with the CUDA C++ ops replaced by their stand-ins."""
    mp.setattr(fused_moe, "_is_cuda", True)
    mp.setattr(fused_moe, "silu_and_mul", cuda_op_standins.silu_and_mul, raising=False)
    mp.setattr(fused_moe, "moe_sum_reduce", cuda_op_standins.moe_sum_reduce, raising=False)
    # inductor on a CPU would compile C++ for the <= 32-token top-k sum; the same torch code, eagerly
    mp.setattr(fused_moe, "moe_sum_reduce_torch_compile",
               fused_moe.moe_sum_reduce_torch_compile._torchdynamo_orig_callable)
    # registered for the CUDA key only; on a GPU, eager no-grad calls skip the dispatcher the same way
    for op in ("inplace_fused_experts", "outplace_fused_experts"):
        mp.setattr(fused_moe, op, getattr(fused_moe, op).__wrapped__)
    mp.setattr(align, "_is_cuda", True)
    mp.setattr(align, "sgl_moe_align_block_size", cuda_op_standins.moe_align_block_size, raising=False)
    mp.setattr(align, "SMALL_NUMEL_LIMIT", moe_align_small_numel.SMALL_NUMEL_LIMIT, raising=False)
    mp.setattr(align, "moe_align_small_numel", moe_align_small_numel.moe_align_small_numel, raising=False)
    mp.setattr(moe_config, "get_device_name", lambda: "NVIDIA H100 80GB HBM3")
    mp.setattr(moe_kernels, "_is_cuda", True)
    mp.setattr(moe_kernels, "is_sm90_supported", lambda: True)  # H100: the block-FP8 GEMM may swap A and B
    mp.setattr(moe_kernels, "sglang_per_token_group_quant_fp8", cuda_op_standins.per_token_group_quant_fp8)


@contextlib.contextmanager
def sglang_in_process(ckpt):
    """SGLang's published config (triton attention and MoE runner) and TP=1 process groups in this process."""
    args = ServerArgs(model_path=str(ckpt), device="cpu", attention_backend="triton",
                      moe_runner_backend="triton", disable_cuda_graph=True)
    runtime_context.publish(args, role="test", ranks=runtime_context.SpawnRanks(world_rank=0))
    parallel_state.init_distributed_environment(world_size=1, rank=0, local_rank=0, backend="gloo",
                                                distributed_init_method=f"tcp://127.0.0.1:{_free_port()}")
    parallel_state.initialize_model_parallel()
    try:
        yield
    finally:
        parallel_state.destroy_model_parallel()
        parallel_state.destroy_distributed_environment()
        runtime_context.reset_context()


@pytest.fixture(scope="module")
def sglang_process(tiny_ckpt):
    with sglang_in_process(tiny_ckpt), pytest.MonkeyPatch.context() as mp:
        cuda_moe_path(mp)
        fix_bf16_dot(mp)
        yield


def cuda_branch_moe(ckpt, dtype: torch.dtype, quant_config=None):
    """Layer 0's LongcatMoE of the model built and loaded through the CUDA branch, parameters in ``dtype``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sgl_model, "on_cuda_device", lambda: True)
        default = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            model = sgl_model.LongcatFlashForCausalLM(ModelConfig(str(ckpt)).hf_config, quant_config)
        finally:
            torch.set_default_dtype(default)
        model.load_weights(safetensors_weights_iterator(sorted(str(p) for p in ckpt.glob("*.safetensors"))))
    moe = model.model.layers[0].mlp
    method = moe.experts.quant_method
    assert method.runner.runner_backend.is_triton()
    if type(method) is UnquantizedFusedMoEMethod:
        method._forward_method = method.forward_cuda  # what SGLang's dispatch resolves to on a GPU
    return moe


@pytest.fixture(scope="module")
def reference(tiny_ckpt, long_prompt_ids):
    """(transformers' MoE layer 0, its real input [110, H]) in fp32."""
    hf_moe, x, _ = oracle.moe_layer_io(tiny_ckpt, long_prompt_ids)
    return hf_moe, x


@pytest.fixture(scope="module", params=[torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def moe(request, sglang_process, tiny_ckpt):
    return cuda_branch_moe(tiny_ckpt, request.param)


# T: one decode token; an awkward 13 (<= 32: SGLang sums the top-k in torch); 110 (its sgl-kernel sum)
# Relative to max |output|. fp32 is not 1e-4: SGLang's runner computes a non-bf16 MoE with
# compute_type fp16 (fused_moe.py: ``compute_type = tl.bfloat16 if ... else tl.float16``), so both GEMMs'
# outputs are rounded to fp16 (fused_moe_kernel: ``accumulator.to(compute_type)``) on a GPU as here.
TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 1e-2}


@pytest.mark.parametrize("tokens", [1, 13, 110])
@torch.no_grad()
def test_cuda_moe_path_matches_transformers(moe, reference, tokens):
    hf_moe, x_ref = reference
    dtype = moe.experts.w13_weight.dtype
    x = x_ref[:tokens].to(dtype, copy=True)
    before = x.clone()
    got = moe(x)
    want = hf_moe(before.float()[None])[0]
    err = (got.float() - want).abs().max().item()
    print(f"{dtype} T={tokens}: max |err| {err:.3g} (max |out| {want.abs().max().item():.3g})")
    assert torch.equal(x, before), "the MoE input was written (the identity term and mlps[0] read it again)"
    assert err <= TOLERANCE[dtype] * want.abs().max().item(), f"max |err| {err}"


@torch.no_grad()
def test_zero_slots_reach_the_kernels_as_minus_one(moe, reference, monkeypatch):
    """The prompt routes ~40% of slots to zero experts: SGLang's kernels must get -1 and skip them."""
    seen = []
    real = align.moe_align_block_size
    monkeypatch.setattr(fused_moe, "moe_align_block_size",
                        lambda ids, *a, **k: seen.append(ids.clone()) or real(ids, *a, **k))
    moe(reference[1][:13].to(moe.experts.w13_weight.dtype, copy=True))
    ids = seen[0]
    assert (ids == -1).any() and (ids >= 0).any() and ids.max() < moe.config.n_routed_experts



@torch.no_grad()
def test_two_ep_ranks_on_the_triton_runner(moe, reference, monkeypatch):
    """EP=2 without a second process: each rank's ids through SGLang's StandardDispatcher and its
    global -> local map (remote experts -> -1, zero experts stay -1), then the runner's ``fused_experts``
    on that rank's half of the experts, as the triton runner calls it (``num_experts != num_local_experts``:
    the expert-filtering branches). The ranks' sum plus the identity term must equal transformers'."""
    hf_moe, x_ref = reference
    experts, c = moe.experts, moe.config
    x = x_ref[:13].to(experts.w13_weight.dtype, copy=True)
    logits = moe.router(x)
    routing = route_with_zero_experts(logits, moe.router.e_score_correction_bias, c.moe_topk, c.n_routed_experts,
                                      c.routed_scaling_factor)
    local, total = c.n_routed_experts // EP, torch.zeros(x.shape, dtype=torch.float32)
    for rank in range(EP):
        out = _dispatch(monkeypatch, rank, c.n_routed_experts, x,
                        StandardTopKOutput(routing.topk_weights, routing.topk_ids, logits))
        config = MoeRunnerConfig(num_experts=c.n_routed_experts, num_local_experts=local, inplace=False)
        total += fused_moe.fused_experts(out.hidden_states, experts.w13_weight[rank * local:(rank + 1) * local],
                                         experts.w2_weight[rank * local:(rank + 1) * local], out.topk_output,
                                         config).float()
    got = add_identity(total.to(x.dtype), routing.identity_coef, x)
    want = hf_moe(x.float()[None])[0]
    err = (got.float() - want).abs().max().item()
    print(f"{x.dtype} EP=2 T=13: max |err| {err:.3g}")
    assert err <= TOLERANCE[x.dtype] * want.abs().max().item()


@torch.no_grad()
def test_block_fp8_experts_on_the_triton_runner(sglang_process, tiny_fp8_ckpt, long_prompt_ids):
    """Chat-FP8's layout: SGLang's Fp8MoEMethod (block [128, 128]) on the triton runner, bf16 activations
    quantised per 128-column group; against transformers on the dequantised checkpoint. Loaded as a GPU
    server loads it; ``process_weights_after_loading`` (nothing for block FP8 on the triton runner) not run."""
    quant = Fp8Config.from_config(json.loads((tiny_fp8_ckpt / "config.json").read_text())["quantization_config"])
    moe = cuda_branch_moe(tiny_fp8_ckpt, torch.bfloat16, quant)
    assert type(moe.experts.quant_method) is Fp8MoEMethod and moe.experts.w13_weight.dtype == torch.float8_e4m3fn
    hf_moe, x_ref, _ = oracle.moe_layer_io(tiny_fp8_ckpt, long_prompt_ids)
    for tokens in (13, 110):
        x = x_ref[:tokens].to(torch.bfloat16, copy=True)
        before = x.clone()
        got = moe(x)
        want = hf_moe(before.float()[None])[0]
        err = (got.float() - want).abs().max().item()
        print(f"block FP8 T={tokens}: max |err| {err:.3g} (max |out| {want.abs().max().item():.3g})")
        assert torch.equal(x, before)
        assert err <= 3e-2 * want.abs().max().item()
