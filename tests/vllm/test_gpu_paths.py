"""The vLLM adapter's CUDA-path choices, checked on the CPU with the model built in this process.

Nothing here runs a GPU kernel. What is checked is what a GPU run builds and loads and how it routes:
  * the Chat-FP8 checkpoint through the GPU branch (vLLM's block-FP8 ``Fp8Config``, no dequantisation):
    every fp8 weight and ``weight_scale_inv`` lands where it belongs, bit for bit, fused and stacked
    parameters included. Only the kernel choice is stubbed: vLLM picks the FP8 GEMM kernel while it
    creates the weights, and this CPU has none (no AMX); the kernel is never called here.
  * one routing per MoE forward, read by both FusedMoE and the identity term, and the result equal to
    transformers' MoE layer;
  * zero slots under data parallel: DeepEP gets -1, other all-to-all backends are refused;
  * ``--enable-ep-weight-filter``: exactly the tensors vLLM's own ``should_skip_weight`` drops may be absent
    (the TP=2/EP=2 engine run in test_offline_parity.py loads through the real filter).
"""

import dataclasses
import glob
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vllm.model_executor.layers.quantization.fp8 as vllm_fp8
from vllm.config import set_current_vllm_config
from vllm.distributed import init_distributed_environment, initialize_model_parallel
from vllm.engine.arg_utils import EngineArgs
from vllm.forward_context import set_forward_context
from vllm.model_executor.layers.fused_moe.config import FusedMoEParallelConfig
from vllm.model_executor.model_loader.utils import process_weights_after_loading
from vllm.utils.network_utils import get_open_port

import longcat_vllm.moe as lc_moe
from longcat_common.checkpoint import CheckpointChecker
from longcat_common.config import LongcatConfig
from longcat_vllm import loading
from longcat_vllm.model import LongcatFlashForCausalLM
from tests import oracle

BLOCK = 128


def _engine_config(ckpt: Path, dtype: str):
    return EngineArgs(model=str(ckpt), dtype=dtype, enforce_eager=True, max_model_len=512).create_engine_config()


@pytest.fixture(scope="module")
def world(tiny_ckpt):
    """vLLM's process groups for one rank, made once in this process (gloo)."""
    with set_current_vllm_config(_engine_config(tiny_ckpt, "float32")):
        init_distributed_environment(world_size=1, rank=0, local_rank=0, backend="gloo",
                                     distributed_init_method=f"tcp://127.0.0.1:{get_open_port()}")
        initialize_model_parallel(1, 1)


def _checkpoint(ckpt: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for shard in sorted(glob.glob(str(ckpt / "*.safetensors"))):
        tensors.update(load_file(shard))
    return tensors


@pytest.fixture(scope="module")
def fp8_model(world, tiny_fp8_ckpt):
    """(our model built as on a GPU from the FP8 checkpoint, its vllm config, the checkpoint tensors)."""
    cfg = _engine_config(tiny_fp8_ckpt, "bfloat16")
    with pytest.MonkeyPatch.context() as mp, set_current_vllm_config(cfg):
        mp.setattr(loading.current_platform, "is_cuda_alike", lambda: True)
        mp.setattr(vllm_fp8, "init_fp8_linear_kernel", lambda **_kw: None)
        model = LongcatFlashForCausalLM(vllm_config=cfg)
    tensors = _checkpoint(tiny_fp8_ckpt)
    model.load_weights(tensors.items())
    return model, cfg, tensors


def _where(name: str, lc: LongcatConfig) -> tuple[str, tuple]:
    """Where a checkpoint tensor belongs in the GPU-branch model: (parameter, index), written out here
    rather than taken from longcat_common's name table, so that the table itself is under test."""
    scale = name.endswith(".weight_scale_inv")
    rows = (lambda n: math.ceil(n / BLOCK)) if scale else (lambda n: n)
    kind = "weight_scale_inv" if scale else "weight"
    parent, _, proj = name.rsplit(".weight", 1)[0].rpartition(".")
    if ".mlp.experts." in name:
        e, i = int(parent.rsplit(".", 1)[1]), rows(lc.expert_ffn_hidden_size)
        base = parent.rsplit(".", 1)[0] + ".routed_experts"
        return {"gate_proj": (f"{base}.w13_{kind}", (e, slice(0, i))),
                "up_proj": (f"{base}.w13_{kind}", (e, slice(i, 2 * i))),
                "down_proj": (f"{base}.w2_{kind}", (e,))}[proj]
    if proj in ("q_a_proj", "kv_a_proj_with_mqa"):
        q = rows(lc.q_lora_rank)
        return f"{parent}.fused_qkv_a_proj.{kind}", ((slice(0, q) if proj == "q_a_proj" else slice(q, None)),)
    if proj in ("gate_proj", "up_proj"):
        f = rows(lc.ffn_hidden_size)
        return f"{parent}.gate_up_proj.{kind}", ((slice(0, f) if proj == "gate_proj" else slice(f, None)),)
    return name, ()


def test_fp8_checkpoint_lands_bit_for_bit_through_the_gpu_branch(fp8_model):
    model, _cfg, tensors = fp8_model
    lc, params = model.config, dict(model.named_parameters())
    q_scale, kv_scale = lc.mla_lora_scales()
    filled = {n: torch.zeros(p.shape, dtype=torch.bool) for n, p in params.items() if p.dtype == torch.float8_e4m3fn
              or n.endswith("weight_scale_inv")}
    checked = 0
    for name, tensor in tensors.items():
        if name.startswith("model.mtp."):
            continue
        pname, index = _where(name, lc)
        got = params[pname].data[index]
        if tensor.dtype == torch.float8_e4m3fn:
            assert params[pname].dtype == torch.float8_e4m3fn, f"{pname} is not fp8: the GPU branch dequantised"
            assert torch.equal(got.view(torch.uint8), tensor.view(torch.uint8)), name
        elif name.endswith("q_a_layernorm.weight") or name.endswith("kv_a_layernorm.weight"):
            factor = q_scale if "q_a_" in name else kv_scale
            torch.testing.assert_close(got, (tensor.float() * factor).to(got.dtype), rtol=0, atol=0)
        else:
            assert torch.equal(got, tensor.to(got.dtype)), name
        if pname in filled:
            filled[pname][index] = True
        checked += 1
    assert checked > 0 and any(n.endswith("fused_qkv_a_proj.weight_scale_inv") for n in filled)
    unfilled = [n for n, mask in filled.items() if not mask.all()]
    assert not unfilled, f"fp8 parameters not (fully) loaded from the checkpoint: {unfilled[:5]}"


@pytest.fixture(scope="module")
def fp32_model(world, tiny_ckpt):
    cfg = _engine_config(tiny_ckpt, "float32")
    with set_current_vllm_config(cfg):
        model = LongcatFlashForCausalLM(vllm_config=cfg)
        model.load_weights(_checkpoint(tiny_ckpt).items())
        process_weights_after_loading(model, cfg.model_config, torch.device("cpu"))
    return model, cfg


def test_moe_routes_once_and_fused_moe_and_identity_read_that_routing(fp32_model, tiny_ckpt, prompt_ids, monkeypatch):
    model, cfg = fp32_model
    _hf_moe, x, want = oracle.moe_layer_io(tiny_ckpt, prompt_ids[2])
    routings, received = [], []
    route, compute = lc_moe.route_with_zero_experts, lc_moe.ZeroExpertSlotRouter._compute_routing

    def counted_route(*args, **kwargs):
        routings.append(route(*args, **kwargs))
        return routings[-1]

    def spy(self, hidden_states, router_logits, indices_type, **kw):
        received.append(router_logits.clone())
        return compute(self, hidden_states, router_logits, indices_type, **kw)

    monkeypatch.setattr(lc_moe, "route_with_zero_experts", counted_route)
    monkeypatch.setattr(lc_moe.ZeroExpertSlotRouter, "_compute_routing", spy)
    with set_current_vllm_config(cfg), set_forward_context(None, cfg):
        got = model.model.layers[0].mlp(x)
    assert len(routings) == 1, "routing must be computed once per MoE forward"
    assert len(received) == 1 and torch.equal(received[0], lc_moe.pack_routing(routings[0]))
    real = routings[0].topk_ids >= 0
    assert 0 < real.sum() < real.numel(), "the prompt must route to both kinds of expert"
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def lc(tiny_ckpt) -> LongcatConfig:
    return LongcatConfig.from_dict(json.loads((tiny_ckpt / "config.json").read_text()))


def _parallel(backend: str, dp: int) -> FusedMoEParallelConfig:
    return FusedMoEParallelConfig(tp_size=1, pcp_size=1, dp_size=dp, ep_size=dp, tp_rank=0, pcp_rank=0, dp_rank=0,
                                  ep_rank=0, sp_size=1, use_ep=True, all2all_backend=backend, enable_eplb=False)


@pytest.mark.parametrize("backend", ["deepep_high_throughput", "deepep_low_latency", "deepep_v2"])
def test_deepep_gets_minus_one_for_zero_slots(lc, backend, monkeypatch):
    monkeypatch.setattr(lc_moe.current_platform, "is_cpu", lambda: False)
    router = lc_moe.ZeroExpertSlotRouter(lc)
    router.bind(torch.tensor([0, 1, -1, -1]), _parallel(backend, dp=2))
    assert router.fill_id == -1


def test_deepep_low_latency_is_refused_above_its_top_k_limit(lc):
    """DeepEP's low-latency kernels take at most 11 top-k slots (kNumMaxTopK); LongCat-Flash routes 12."""
    router = lc_moe.ZeroExpertSlotRouter(dataclasses.replace(lc, moe_topk=12))
    with pytest.raises(ValueError, match="deepep_low_latency takes at most 11 top-k slots.*routes 12.*"
                                         "deepep_high_throughput"):
        router.bind(torch.tensor([0, 1, -1, -1]), _parallel("deepep_low_latency", dp=2))


@pytest.mark.parametrize("backend", ["allgather_reducescatter", "naive", "flashinfer_nvlink_two_sided",
                                     "mori_high_throughput", "nixl_ep"])
def test_other_all2all_backends_with_data_parallel_are_refused_on_cuda(lc, backend, monkeypatch):
    monkeypatch.setattr(lc_moe.current_platform, "is_cpu", lambda: False)
    router = lc_moe.ZeroExpertSlotRouter(lc)
    with pytest.raises(ValueError, match=f"all2all backend '{backend}'.*--all2all-backend deepep_high_throughput"):
        router.bind(torch.tensor([0, 1, -1, -1]), _parallel(backend, dp=2))


@pytest.mark.parametrize("backend", ["allgather_reducescatter", "naive"])
def test_cpu_keeps_global_ids_and_maps_them_after_the_dp_all_gather(lc, backend):
    """vLLM's CPU communicator runs DP + EP as all-gather / reduce-scatter of the routed ids. The router
    hands on global ids (-1 for zero slots); this rank's experts map the gathered ids of every DP rank
    with this rank's expert map: its own experts local, everything else local 0 with weight 0."""
    half = lc.n_routed_experts // 2
    expert_map = torch.cat([torch.full((half,), -1), torch.arange(half)])  # EP rank 1 owns the second half
    router = lc_moe.ZeroExpertSlotRouter(lc)
    router.bind(expert_map, _parallel(backend, dp=2))
    assert router.fill_id == -1
    ids = torch.tensor([[0, half, -1, half + 3], [-1, -1, 1, lc.n_routed_experts - 1]], dtype=torch.int32)
    weights = torch.tensor([[0.1, 0.2, 0.0, 0.3], [0.0, 0.0, 0.4, 0.5]])
    w, i = router.kernel_routing(weights, ids)
    assert torch.equal(i, ids) and torch.equal(w, weights)
    w, i = lc_moe.local_expert_routing(w, i, expert_map)
    assert i.tolist() == [[0, 0, 0, 3], [0, 0, 0, half - 1]]
    assert torch.equal(w, torch.tensor([[0.0, 0.2, 0.0, 0.3], [0.0, 0.0, 0.0, 0.5]]))


def test_ep_weight_filter_excuses_exactly_what_vllm_drops(lc, tiny_ckpt):
    half = lc.n_routed_experts // 2
    expert_map = torch.cat([torch.arange(half), torch.full((half,), -1)])  # rank 0 of EP 2 owns the first half
    parallel = type("P", (), dict(enable_expert_parallel=True, enable_ep_weight_filter=True, enable_eplb=False))
    absent_ok = loading.ep_filtered_weights(parallel, expert_map)
    tensors = _checkpoint(tiny_ckpt)
    remote = f"model.layers.0.mlp.experts.{half}.gate_proj.weight"
    local = "model.layers.0.mlp.experts.0.gate_proj.weight"
    assert absent_ok(remote) and not absent_ok(local) and not absent_ok("model.layers.0.mlps.0.gate_proj.weight")

    def load(names_dropped):
        kept = ((n, t) for n, t in tensors.items() if n not in names_dropped)
        return list(CheckpointChecker(lc, may_be_absent=absent_ok)(kept))

    load({n for n in tensors if absent_ok(n)})  # what the filter drops: accepted
    with pytest.raises(ValueError, match="missing tensors.*experts.0.gate_proj"):
        load({n for n in tensors if absent_ok(n)} | {local})
    off = type("P", (), dict(enable_expert_parallel=True, enable_ep_weight_filter=False, enable_eplb=False))
    assert loading.ep_filtered_weights(off, expert_map) is None


@pytest.mark.parametrize("on_cpu", [True, False], ids=["cpu", "cuda"])
@pytest.mark.parametrize("ep", [False, True], ids=["tp-only", "ep-map"])
def test_router_hands_the_kernel_fresh_contiguous_routing_on_every_device(lc, monkeypatch, on_cpu, ep):
    """The fused-MoE kernels read top-k weights as a dense [T, k] (Triton by flat slot index, FlashInfer
    and the DP all-gather by data_ptr, DeepEP asserts it): a strided view hands token 2m token m's weights."""
    monkeypatch.setattr(lc_moe.current_platform, "is_cpu", lambda: on_cpu)
    half = lc.n_routed_experts // 2
    expert_map = torch.cat([torch.arange(half), torch.full((half,), -1)]) if ep else None
    router = lc_moe.ZeroExpertSlotRouter(lc)
    router.bind(expert_map, _parallel("naive", dp=1))
    logits = torch.randn(7, lc.num_experts_total, generator=torch.Generator().manual_seed(0))
    routing = lc_moe.route_with_zero_experts(logits, None, lc.moe_topk, lc.n_routed_experts, 6.0)
    assert (routing.topk_ids < 0).any() and (routing.topk_ids >= 0).any()
    weights, ids = router._compute_routing(None, lc_moe.pack_routing(routing), torch.int32)
    assert weights.is_contiguous() and ids.is_contiguous() and weights.shape == ids.shape == (7, lc.moe_topk)
    real = routing.topk_ids >= 0
    # CPU: -1 (its experts map ids after any DP all-gather); CUDA: the first expert the map sends to -1,
    # or expert 0 without a map
    fill = -1 if on_cpu else half if ep else 0
    assert torch.equal(ids, torch.where(real, routing.topk_ids, fill).to(torch.int32))
    assert torch.equal(weights, torch.where(real, routing.topk_weights, 0.0))


def test_flash_lite_takes_piecewise_cuda_graphs_only():
    """On CUDA our start-up check sets PIECEWISE graphs for Flash-Lite where the user chose none, refuses
    a FULL mode (it would capture the n-gram embedding's per-step history reads), and leaves Flash alone."""
    from types import SimpleNamespace

    from vllm.config.compilation import CUDAGraphMode

    from longcat_common.testing.tiny import hub_config
    from longcat_vllm.startup_check import piecewise_graphs_for_lite

    from .cuda_platform import as_cuda

    lite, flash = (LongcatConfig.from_dict(hub_config(p, 1024)) for p in ("lite", "tiny"))

    def mode_after(config, mode):
        vllm_config = SimpleNamespace(compilation_config=SimpleNamespace(cudagraph_mode=mode))
        piecewise_graphs_for_lite(vllm_config, config)
        return vllm_config.compilation_config.cudagraph_mode

    assert mode_after(lite, None) is None  # the CPU platform: untouched
    with as_cuda():
        assert mode_after(lite, None) == CUDAGraphMode.PIECEWISE
        assert mode_after(lite, CUDAGraphMode.NONE) == CUDAGraphMode.NONE
        assert mode_after(flash, None) is None
        for full in (CUDAGraphMode.FULL, CUDAGraphMode.FULL_DECODE_ONLY, CUDAGraphMode.FULL_AND_PIECEWISE):
            with pytest.raises(ValueError, match=f"cudagraph_mode {full.name} would capture Flash-Lite"):
                mode_after(lite, full)
