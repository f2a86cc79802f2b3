"""The CUDA branch of the adapter, built and loaded on CPU: SGLang's own ``Fp8Config`` from the checkpoint's
quantization_config (block 128 x 128), the FP8 layers SGLang creates for it, and the Chat-FP8 checkpoint
loaded through them, as a GPU server would before ``process_weights_after_loading`` (whose CUDA kernels
are not called). Every fp8 weight and weight_scale_inv must land bit for bit where it belongs, the
q_a / kv_a rows stacked into the one ``fused_qkv_a_proj`` and the experts' stacked into w13 / w2.

Only the device decision is swapped (``longcat_sglang.model._on_cuda``); the CUDA rotary embedding has
no weights and needs ``vllm._custom_ops``, so the rope the GPU branch asks for is checked and replaced.
"""

import json
import socket

import pytest
import torch
from safetensors import safe_open

from longcat_common.fp8 import FP8_DTYPE
from longcat_sglang import attention, model as sgl_model
from sglang.srt import runtime_context
from sglang.srt.configs.model_config import ModelConfig
from sglang.srt.distributed import parallel_state
from sglang.srt.layers.quantization.fp8 import Fp8Config
from sglang.srt.model_loader.weight_utils import safetensors_weights_iterator
from sglang.srt.server_args import ServerArgs


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
    rope_calls = []

    def get_rope(head_size, **kwargs):
        rope_calls.append((head_size, kwargs))
        return attention.PortableRope(head_size, kwargs["max_position"], kwargs["base"])

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sgl_model, "_on_cuda", lambda: True)
        mp.setattr(attention, "get_rope", get_rope)
        hf_config = ModelConfig(str(tiny_fp8_ckpt)).hf_config
        quant = Fp8Config.from_config(json.loads((tiny_fp8_ckpt / "config.json").read_text())["quantization_config"])
        model = sgl_model.LongcatFlashForCausalLM(hf_config, quant)
        files = sorted(str(p) for p in tiny_fp8_ckpt.glob("*.safetensors"))
        model.load_weights(safetensors_weights_iterator(files))
    assert rope_calls and all(kw["is_neox_style"] is False for _, kw in rope_calls)
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
