"""The CUDA branch of the adapter, in process on CPU (one SGLang context for the module).

Build and load: SGLang's own ``Fp8Config`` from the checkpoint's
quantization_config (block 128 x 128), the FP8 layers SGLang creates for it, and the Chat-FP8 checkpoint
loaded through them, as a GPU server would before ``process_weights_after_loading`` (whose CUDA kernels
are not called). Every fp8 weight and weight_scale_inv must land bit for bit where it belongs, the
q_a / kv_a rows stacked into the one ``fused_qkv_a_proj`` and the experts' stacked into w13 / w2.

Only the device decision is swapped (``longcat_sglang.model.on_cuda_device``).

Attention forms: SGLang's DeepSeek rule (its own handlers) replayed per backend and batch kind against the
shapes each backend's prefill expects, and the MHA prefill's numbers against the absorbed form and the
transformers oracle (plain math: SDPA stands in for the kernels). Then the start-up refusals and the
zero-expert counting's start-up and padding policy.
"""

import inspect
import json
import socket
import threading
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from safetensors import safe_open

from longcat_common.fp8 import FP8_DTYPE
from longcat_sglang import attention, model as sgl_model
from longcat_sglang.moe import check_moe_runner_backend
from sglang.srt import runtime_context
from sglang.srt.configs.model_config import ModelConfig
from sglang.srt.distributed import parallel_state
from sglang.srt.layers.attention.flashinfer_mla_backend import FlashInferMLAAttnBackend
from sglang.srt.layers.moe.utils import MoeRunnerBackend
from sglang.srt.layers.quantization.fp8 import Fp8Config
from sglang.srt.model_executor.forward_batch_info import ForwardMode
from sglang.srt.model_loader.weight_utils import safetensors_weights_iterator
from sglang.srt.server_args import ServerArgs
from tests import oracle


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sglang_process(tiny_fp8_ckpt):
    """SGLang's published config and TP=1 process groups in this process, as its scheduler sets them up."""
    args = ServerArgs(model_path=str(tiny_fp8_ckpt), device="cpu", attention_backend="flashinfer",
                      disable_cuda_graph=True)
    runtime_context.publish(args, role="test", ranks=runtime_context.SpawnRanks(world_rank=0))
    parallel_state.init_distributed_environment(world_size=1, rank=0, local_rank=0, backend="gloo",
                                                distributed_init_method=f"tcp://127.0.0.1:{_free_port()}")
    parallel_state.initialize_model_parallel()
    yield
    parallel_state.destroy_model_parallel()
    parallel_state.destroy_distributed_environment()
    runtime_context.reset_context()


@pytest.fixture(scope="module")
def gpu_branch_model(sglang_process, tiny_fp8_ckpt):
    """(model, checkpoint tensors) of the CUDA branch with SGLang's Fp8Config, loaded from the FP8 checkpoint."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sgl_model, "on_cuda_device", lambda: True)
        hf_config = ModelConfig(str(tiny_fp8_ckpt)).hf_config
        quant = Fp8Config.from_config(json.loads((tiny_fp8_ckpt / "config.json").read_text())["quantization_config"])
        model = sgl_model.LongcatFlashForCausalLM(hf_config, quant)
        files = sorted(str(p) for p in tiny_fp8_ckpt.glob("*.safetensors"))
        model.load_weights(safetensors_weights_iterator(files))
    ckpt = {}
    for f in files:
        with safe_open(f, "pt") as st:
            ckpt.update((k, st.get_tensor(k)) for k in st.keys())
    return model, ckpt


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.uint8) if t.dtype == FP8_DTYPE else t


def _same(got: torch.Tensor, want: torch.Tensor, what: str):
    assert got.dtype == want.dtype and got.shape == want.shape, f"{what}: {got.dtype}{tuple(got.shape)} " \
                                                                f"vs checkpoint {want.dtype}{tuple(want.shape)}"
    assert torch.equal(_bits(got), _bits(want)), f"{what} differs from the checkpoint"


def test_gpu_branch_keeps_fp8_and_builds_one_unmerged_fused_qkv_a(gpu_branch_model):
    model, _ = gpu_branch_model
    assert not model.dequantize_fp8 and isinstance(model.quant_config, Fp8Config)
    lc = model.lc
    attn = model.model.layers[0].self_attn[0]
    assert attn.fused_qkv_a_proj.weight.dtype == FP8_DTYPE
    assert tuple(attn.fused_qkv_a_proj.weight.shape) == (lc.q_lora_rank + lc.kv_lora_rank + lc.qk_rope_head_dim,
                                                         lc.hidden_size)


def test_every_fp8_weight_and_scale_lands_bit_for_bit(gpu_branch_model):
    model, ckpt = gpu_branch_model
    params = dict(model.named_parameters())
    checked = set()
    for layer in range(model.lc.num_layers):
        for i in range(2):
            attn = f"model.layers.{layer}.self_attn.{i}"
            for kind in ("weight", "weight_scale_inv"):
                _same(params[f"{attn}.fused_qkv_a_proj.{kind}"],
                      torch.cat([ckpt[f"{attn}.q_a_proj.{kind}"], ckpt[f"{attn}.kv_a_proj_with_mqa.{kind}"]]),
                      f"{attn}.fused_qkv_a_proj.{kind}")
                checked |= {f"{attn}.q_a_proj.{kind}", f"{attn}.kv_a_proj_with_mqa.{kind}"}
                for proj in ("q_b_proj", "kv_b_proj", "o_proj"):
                    _same(params[f"{attn}.{proj}.{kind}"], ckpt[f"{attn}.{proj}.{kind}"], f"{attn}.{proj}.{kind}")
                    checked.add(f"{attn}.{proj}.{kind}")
                mlp = f"model.layers.{layer}.mlps.{i}"
                _same(params[f"{mlp}.gate_up_proj.{kind}"],
                      torch.cat([ckpt[f"{mlp}.gate_proj.{kind}"], ckpt[f"{mlp}.up_proj.{kind}"]]),
                      f"{mlp}.gate_up_proj.{kind}")
                _same(params[f"{mlp}.down_proj.{kind}"], ckpt[f"{mlp}.down_proj.{kind}"], f"{mlp}.down_proj.{kind}")
                checked |= {f"{mlp}.{p}.{kind}" for p in ("gate_proj", "up_proj", "down_proj")}
        experts = f"model.layers.{layer}.mlp.experts"
        for kind, param_kind in (("weight", "weight"), ("weight_scale_inv", "weight_scale_inv")):
            w13, w2 = params[f"{experts}.w13_{param_kind}"], params[f"{experts}.w2_{param_kind}"]
            assert w13.shape[0] == w2.shape[0] == model.lc.n_routed_experts
            for e in range(model.lc.n_routed_experts):
                _same(w13[e], torch.cat([ckpt[f"{experts}.{e}.gate_proj.{kind}"], ckpt[f"{experts}.{e}.up_proj.{kind}"]]),
                      f"{experts}.w13_{param_kind}[{e}]")
                _same(w2[e], ckpt[f"{experts}.{e}.down_proj.{kind}"], f"{experts}.w2_{param_kind}[{e}]")
                checked |= {f"{experts}.{e}.{p}.{kind}" for p in ("gate_proj", "up_proj", "down_proj")}
    quantised = {n for n, t in ckpt.items() if n.endswith("weight_scale_inv") or t.dtype == FP8_DTYPE}
    assert quantised - checked == {n for n in quantised if n.startswith("model.mtp.")}, "every main-model fp8 tensor"


BATCHES = {  # kind -> (forward mode, cached prefix lengths per request)
    "extend without prefix": (ForwardMode.EXTEND, [0, 0]),
    "extend with prefix": (ForwardMode.EXTEND, [0, 7]),
    "mixed chunk": (ForwardMode.MIXED, [5, 0]),
    "decode": (ForwardMode.DECODE, [9, 4]),
    "target verify": (ForwardMode.TARGET_VERIFY, [9, 4]),
    "draft extend": (ForwardMode.DRAFT_EXTEND_V2, [9, 4]),
}
BACKENDS = attention.MHA_PREFILL_BACKENDS + attention.ABSORBED_ONLY_BACKENDS


def _batch(mode, prefix, seq=(12, 12)):
    state = {}
    return types.SimpleNamespace(
        forward_mode=mode, extend_prefix_lens_cpu=list(prefix), seq_lens_cpu=list(seq),
        get_max_chunk_capacity=lambda: 128 * 1024, mha_return_lse=None, state=state,
        set_attn_attend_prefix_cache=lambda v: state.update(attn_attend_prefix_cache=v),
        out_cache_loc=torch.arange(sum(seq) - sum(prefix)), out_cache_loc_is_physical=True)


def _serving(monkeypatch, backend: str):
    monkeypatch.setattr(attention, "get_attn_backend", lambda: types.SimpleNamespace(
        prefill_attention_backend_str=backend, decode_attention_backend_str=backend))


def _flashinfer_use_ragged(attn, mode, prefix) -> bool:
    """FlashInfer MLA's init_forward_metadata (flashmla extends through it): the ragged MHA wrapper for
    extends (not decode, not verify) without a cached prefix, outside captured prefill graphs."""
    return not (mode.is_decode_or_idle() or mode.is_target_verify()) and not attn.flashinfer_mla_disable_ragged \
        and not any(prefix)


def test_the_flashinfer_rule_replayed_here_is_the_installed_one():
    source = inspect.getsource(FlashInferMLAAttnBackend.init_forward_metadata)
    assert "not get_exec().kernel.flashinfer_mla_disable_ragged\n                and extend_no_prefix" in source
    assert "extend_no_prefix = not any(forward_batch.extend_prefix_lens_cpu)" in source


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", BATCHES)
def test_mha_form_exactly_where_the_backend_expects_it(monkeypatch, gpu_branch_model, backend, kind):
    attn = gpu_branch_model[0].model.layers[0].self_attn[1]
    mode, prefix = BATCHES[kind]
    _serving(monkeypatch, backend)
    fresh_prefill = mode.is_extend_without_speculative() and not any(prefix)
    want = fresh_prefill and backend != "torch_native"  # torch_native reads K/V back from the latent pool
    assert attn.uses_mha(_batch(mode, prefix)) == want
    if backend in ("flashinfer", "flashmla") and kind != "draft extend":
        # draft extends run on a draft model, and always over a cached prefix
        assert attn.uses_mha(_batch(mode, prefix)) == _flashinfer_use_ragged(attn, mode, prefix)


def test_flashinfer_without_ragged_gets_the_absorbed_form(monkeypatch, gpu_branch_model):
    attn = gpu_branch_model[0].model.layers[0].self_attn[0]
    _serving(monkeypatch, "flashinfer")
    monkeypatch.setattr(attn, "flashinfer_mla_disable_ragged", True)
    assert not attn.uses_mha(_batch(ForwardMode.EXTEND, [0, 0]))


@pytest.fixture(scope="module")
def cpu_model(sglang_process, tiny_ckpt):
    """The CPU branch (fp32) on the bf16 checkpoint, for the numbers."""
    model = sgl_model.LongcatFlashForCausalLM(ModelConfig(str(tiny_ckpt)).hf_config, None)
    model.load_weights(safetensors_weights_iterator(sorted(str(p) for p in tiny_ckpt.glob("*.safetensors"))))
    return model


class CausalSdpa(nn.Module):
    """Stands in for a backend's prefill kernel: causal attention over this batch's tokens, K/V heads broadcast."""

    def __init__(self, replaced, save_kv_cache: bool):
        super().__init__()
        self.heads, self.scaling, self.layer_id = replaced.tp_q_head_num, replaced.scaling, replaced.layer_id
        self.save_kv_cache = save_kv_cache

    def forward(self, q, k, v, forward_batch, save_kv_cache=True, q_rope=None, k_rope=None):
        assert save_kv_cache == self.save_kv_cache and q_rope is None
        q, k, v = (t.view(t.shape[0], -1, t.shape[-1]).expand(-1, self.heads, -1).transpose(0, 1) for t in (q, k, v))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scaling)
        return o.transpose(0, 1).reshape(o.shape[1], -1)


@pytest.fixture(scope="module")
def layer0_attention_io(tiny_ckpt, prompt_ids):
    """transformers' layer-0 first attention sublayer on a prompt: (hidden input [T, H], output [T, H])."""
    model, seen = oracle.load_oracle(tiny_ckpt), {}
    attn = model.model.layers[0].self_attn[0]
    handle = attn.register_forward_hook(
        lambda _m, args, kwargs, out: seen.update(x=kwargs.get("hidden_states", args[0] if args else None), y=out[0]),
        with_kwargs=True)
    try:
        oracle.logits(model, prompt_ids[0])
    finally:
        handle.remove()
    return seen["x"][0], seen["y"][0]


def test_mha_prefill_matches_the_absorbed_form_and_the_oracle(monkeypatch, cpu_model, layer0_attention_io):
    x, want = layer0_attention_io
    attn, lc = cpu_model.model.layers[0].self_attn[0], cpu_model.lc
    saved = []
    monkeypatch.setattr(attention, "get_token_to_kv_pool", lambda: types.SimpleNamespace(
        set_mla_kv_buffer=lambda layer, loc, c, k_pe: saved.append((layer.layer_id, loc.loc, c, k_pe))))
    layer_id = attn.attn_mqa.layer_id
    monkeypatch.setitem(attn._modules, "attn_mha", CausalSdpa(attn.attn_mha, save_kv_cache=False))
    monkeypatch.setitem(attn._modules, "attn_mqa", CausalSdpa(attn.attn_mqa, save_kv_cache=True))
    positions, batch = torch.arange(x.shape[0]), _batch(ForwardMode.EXTEND, [0], seq=[x.shape[0]])

    _serving(monkeypatch, "flashinfer")
    mha = attn(positions, x, batch)
    assert batch.state == {"attn_attend_prefix_cache": False} and batch.mha_return_lse is False
    assert len(saved) == 1 and saved[0][0] == layer_id  # the latent is cached once, then MHA
    assert saved[0][2].shape == (x.shape[0], 1, lc.kv_lora_rank) and saved[0][3].shape == (x.shape[0], 1, 64)
    _serving(monkeypatch, "torch_native")
    absorbed = attn(positions, x, _batch(ForwardMode.EXTEND, [0], seq=[x.shape[0]]))

    torch.testing.assert_close(mha, absorbed, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(mha, want, rtol=1e-4, atol=1e-5)


def test_backends_without_our_shapes_are_refused_at_start_up(monkeypatch):
    for name in ("fa4", "cutedsl_mla", "aiter", "dsa", "flex_attention"):
        with pytest.raises(ValueError, match=f"attention backend '{name}' .* is not supported"):
            attention.check_attention_backends("flashinfer", name) if name != "fa4" else \
                attention.check_attention_backends(name, "flashinfer")
    attention.check_attention_backends("fa3", "flashinfer")
    monkeypatch.setattr(attention, "get_schedule", lambda: types.SimpleNamespace(disable_chunked_prefix_cache=False))
    with pytest.raises(ValueError, match="trtllm_mla needs --disable-chunked-prefix-cache"):
        attention.check_attention_backends("trtllm_mla", "trtllm_mla")
    monkeypatch.setattr(attention, "get_schedule", lambda: types.SimpleNamespace(disable_chunked_prefix_cache=True))
    attention.check_attention_backends("trtllm_mla", "trtllm_mla")


def test_moe_runners_that_cannot_take_our_routing_are_refused():
    for ok in (MoeRunnerBackend.AUTO, MoeRunnerBackend.TRITON, MoeRunnerBackend.DEEP_GEMM):
        check_moe_runner_backend(ok)
    for bad in set(MoeRunnerBackend) - {MoeRunnerBackend.AUTO, MoeRunnerBackend.TRITON, MoeRunnerBackend.DEEP_GEMM}:
        with pytest.raises(ValueError, match=f"--moe-runner-backend {bad.value} is not supported"):
            check_moe_runner_backend(bad)


def test_counting_waits_for_start_up_and_skips_graph_padding(sglang_process, monkeypatch, tiny_ckpt):
    """Zero-expert counting (longcat_sglang/metrics.py): SGLang's graph capture and its warm-ups call the
    model directly before ``Scheduler.run_event_loop``: not counted, and no thread of ours exists (a CUDA
    call from another thread invalidates a capture). Served forwards pass ``ModelRunner.forward`` with
    the batch before graph padding: rows past its tokens are not counted, with TP alone too (where
    SGLang's own ``num_token_non_padded`` is not set)."""
    from longcat_common.config import LongcatConfig
    from longcat_sglang import metrics as sgl_metrics
    from longcat_sglang.moe import LongcatMoE

    monkeypatch.setattr(sgl_metrics, "_counter", None)
    monkeypatch.setattr(sgl_metrics, "_real_tokens", None)
    monkeypatch.setattr(runtime_context, "get_observability", lambda: types.SimpleNamespace(enable_metrics=True))
    lc = LongcatConfig.from_dict(json.loads((tiny_ckpt / "config.json").read_text()))
    moe = LongcatMoE(lc, 0, None, on_cuda=False, prefix="model.layers.0.mlp")
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.05, generator=torch.Generator().manual_seed(0))
    counter, x = moe.slot_counter, torch.randn(5, lc.hidden_size, generator=torch.Generator().manual_seed(1))
    publishers = lambda: [t for t in threading.enumerate() if t.name == "longcat-metrics"]  # noqa: E731
    before = len(publishers())

    moe(x)  # what a capture warm-up runs
    assert counter.totals() == (0, 0) and counter.flusher is None and len(publishers()) == before
    sgl_metrics.start_serving()  # the run_event_loop hook
    assert counter.flusher.is_alive() and len(publishers()) == before + 1
    sgl_metrics.mark_step(None, types.SimpleNamespace(input_ids=torch.zeros(3, dtype=torch.long),
                                                      global_num_tokens_cpu=None))
    moe(x)  # a 3-token batch padded to 5 rows, as a graph replays it
    assert counter.totals() == zero_and_all_slots(moe, lc, x[:3])


def zero_and_all_slots(moe, lc, x) -> tuple[int, int]:
    from longcat_common.routing import route_with_zero_experts

    routing = route_with_zero_experts(moe.router(x), moe.router.e_score_correction_bias, lc.moe_topk,
                                      lc.n_routed_experts, lc.routed_scaling_factor)
    return int((routing.topk_ids < 0).sum()), x.shape[0] * lc.moe_topk


def test_counting_under_dp_attention_skips_each_slots_padding(sglang_process, monkeypatch, tiny_ckpt):
    """DP attention (longcat_sglang/dp_gather.py): the MoE input holds one slot per DP rank, its real tokens
    first. The scheduler's per-rank counts, which ``ModelRunner.forward`` sees before the DP padding, bound
    each slot; rows past them are not counted: MAX_LEN slots padded to the longest rank, an idle rank's
    slot of padding rows only, and SUM_LEN slots back to back (an idle rank's empty)."""
    from longcat_common.config import LongcatConfig
    from longcat_sglang import metrics as sgl_metrics
    from longcat_sglang.moe import LongcatMoE

    monkeypatch.setattr(sgl_metrics, "_counter", None)
    monkeypatch.setattr(sgl_metrics, "_prometheus_sink", lambda config: None)  # the other test's series exist
    monkeypatch.setattr(runtime_context, "get_observability", lambda: types.SimpleNamespace(enable_metrics=True))
    lc = LongcatConfig.from_dict(json.loads((tiny_ckpt / "config.json").read_text()))
    moe = LongcatMoE(lc, 0, None, on_cuda=False, prefix="model.layers.0.mlp")
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.05, generator=torch.Generator().manual_seed(0))
    counter = moe.slot_counter
    monkeypatch.setattr(sgl_metrics, "_real_tokens", torch.zeros(2, dtype=torch.int64))  # two DP ranks
    counter.set_enabled(True)
    x = torch.randn(8, lc.hidden_size, generator=torch.Generator().manual_seed(1))
    # (tokens per DP rank, slot sizes of the gathered MoE input, its real rows)
    for real, slots, rows in (([3, 1], [3, 3], [0, 1, 2, 3]),        # MAX_LEN: rank 1 padded from 1 to 3
                              ([2, 0], [2, 2], [0, 1]),              # MAX_LEN: rank 1 idle, a padding row
                              ([2, 3], [2, 3], [0, 1, 2, 3, 4]),     # SUM_LEN: no padding
                              ([0, 4], [0, 4], [0, 1, 2, 3])):       # SUM_LEN: rank 0 idle
        before = counter.totals()
        sgl_metrics.mark_step(None, types.SimpleNamespace(input_ids=torch.zeros(real[0]), global_num_tokens_cpu=real))
        gathered = x[: sum(slots)]
        moe(gathered, torch.tensor(slots))
        counted = tuple(after - b for after, b in zip(counter.totals(), before))
        assert counted == zero_and_all_slots(moe, lc, gathered[rows]), (real, slots)
