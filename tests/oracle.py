"""The reference model for every test: a generated checkpoint in transformers' LongcatFlashForCausalLM.

transformers 5.19 cannot load a LongCat-Flash checkpoint itself: ``LongcatFlashExperts.gate_up_proj``
is allocated with n_routed + zero_expert_num rows instead of n_routed (LONGCAT_SPEC.md §6). So the
model is built from config.json (with the model_type the Hub file lacks), the experts' ``gate_up_proj``
is replaced by one of n_routed rows (rows past n_routed are never read: those ids go to the identity
expert), and the state dict is loaded here, strictly: every parameter must come from the checkpoint
and only ``model.mtp.*`` is left out. FP8 checkpoints are dequantised to fp32 first.

Read and confirmed in transformers' modeling_longcat_flash.py: ``LongcatFlashTopkRouter`` multiplies
all top-k weights, zero-expert slots included, by routed_scaling_factor; ``LongcatFlashMLA`` scales
q (nope and rope parts) by sqrt(H / q_lora_rank) and the normed KV latent by sqrt(H / kv_lora_rank),
whatever config.json's mla_scale_* booleans say. Its q_a/kv_a latent RMSNorms use the class default
eps 1e-6; the oracle sets them to rms_norm_eps like vLLM, SGLang and the spec's RMSNorm (on the tiny
checkpoint that moves logits of magnitude ~30 by 7e-5).
"""

import json
import re
from functools import lru_cache
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import LongcatFlashConfig, LongcatFlashForCausalLM
from transformers.initialization import no_init_weights

from longcat_common.fp8 import Fp8CheckpointDequantizer

_EXPERT = re.compile(r"^(model\.layers\.\d+\.mlp\.experts)\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$")


def _hf_config(raw: dict) -> LongcatFlashConfig:
    raw = {k: v for k, v in raw.items() if k not in ("quantization_config", "architectures")}
    return LongcatFlashConfig(**{**raw, "head_dim": raw["qk_rope_head_dim"]}, attn_implementation="eager")


def _checkpoint_tensors(ckpt_dir: Path):
    """(name, tensor) of every main-model checkpoint tensor, FP8 weights dequantised to fp32."""
    weight_map = json.loads((ckpt_dir / "model.safetensors.index.json").read_text())["weight_map"]

    def stream():
        for file in sorted(set(weight_map.values())):
            with safe_open(str(ckpt_dir / file), framework="pt") as f:
                yield from ((n, f.get_tensor(n)) for n in f.keys() if not n.startswith("model.mtp."))

    return Fp8CheckpointDequantizer(dtype=torch.float32)(stream())


def hf_state_dict(ckpt_dir: Path, n_routed: int) -> dict[str, torch.Tensor]:
    """Checkpoint tensors renamed for transformers: per-expert weights merged per layer into
    ``mlp.experts.gate_up_proj`` [n_routed, 2I, H] (gate rows, then up rows) and
    ``mlp.experts.down_proj`` [n_routed, H, I]."""
    state, experts = {}, {}
    for name, tensor in _checkpoint_tensors(ckpt_dir):
        match = _EXPERT.match(name)
        if match:
            prefix, e, proj = match.groups()
            experts.setdefault(prefix, {})[(int(e), proj)] = tensor
        else:
            state[name] = tensor
    for prefix, parts in experts.items():
        state[f"{prefix}.gate_up_proj"] = torch.stack(
            [torch.cat([parts.pop((e, "gate_proj")), parts.pop((e, "up_proj"))]) for e in range(n_routed)])
        state[f"{prefix}.down_proj"] = torch.stack([parts.pop((e, "down_proj")) for e in range(n_routed)])
        if parts:
            raise ValueError(f"{prefix}: experts beyond n_routed_experts={n_routed}: {sorted(parts)[:3]}")
    return state


@lru_cache(maxsize=4)
def _load(ckpt_dir: Path, dtype: torch.dtype) -> LongcatFlashForCausalLM:
    config = _hf_config(json.loads((ckpt_dir / "config.json").read_text()))
    with no_init_weights():  # every parameter is overwritten by the strict load below
        model = LongcatFlashForCausalLM(config).to(torch.float32)
    for layer in model.model.layers:
        experts = layer.mlp.experts  # transformers 5.19 allocates n_routed + zero rows here
        experts.gate_up_proj = torch.nn.Parameter(torch.empty(config.n_routed_experts, *experts.gate_up_proj.shape[1:]))
        for attn in layer.self_attn:
            attn.q_a_layernorm.variance_epsilon = attn.kv_a_layernorm.variance_epsilon = config.rms_norm_eps
    model.load_state_dict(hf_state_dict(ckpt_dir, config.n_routed_experts), strict=True)
    model.to(dtype).eval()
    for layer in model.model.layers:  # the checkpoint's router is fp32 (transformers' _keep_in_fp32_modules)
        layer.mlp.router.float()
    return model


def load_oracle(ckpt_dir, dtype: torch.dtype = torch.float32) -> LongcatFlashForCausalLM:
    """The checkpoint in transformers, cached per directory and dtype (the router stays fp32)."""
    return _load(Path(ckpt_dir).resolve(), dtype)


@torch.no_grad()
def logits(model: LongcatFlashForCausalLM, token_ids: list[int]) -> torch.Tensor:
    """One sequence -> next-token logits [T, vocab] in fp32 (row t predicts token t + 1)."""
    return model(torch.tensor([token_ids])).logits[0].float()


def prompt_logprobs(model: LongcatFlashForCausalLM, token_ids: list[int]) -> list[float | None]:
    """Teacher-forced log-prob of each token given its prefix; None at position 0 (vLLM's convention)."""
    logprobs = logits(model, token_ids).log_softmax(-1)[:-1]
    return [None] + logprobs.gather(1, torch.tensor(token_ids[1:])[:, None])[:, 0].tolist()


def topk_logprobs(model: LongcatFlashForCausalLM, token_ids: list[int], k: int) -> list[dict[int, float]]:
    """For each position t, the k most likely next tokens {id: log-prob} given token_ids[: t + 1]."""
    values, ids = logits(model, token_ids).log_softmax(-1).topk(k, dim=-1)
    return [dict(zip(i.tolist(), v.tolist())) for i, v in zip(ids, values)]


@torch.no_grad()
def greedy(model: LongcatFlashForCausalLM, token_ids: list[int], max_new_tokens: int) -> tuple[list[int], list[float]]:
    """Greedy continuation (KV-cached, EOS not special) -> (new ids, top1 - top2 logit gap at each step)."""
    new, margins, cache, step = [], [], None, token_ids
    for _ in range(max_new_tokens):
        out = model(torch.tensor([step]), past_key_values=cache, use_cache=True)
        top = out.logits[0, -1].float().topk(2)
        new.append(int(top.indices[0]))
        margins.append(float(top.values[0] - top.values[1]))
        cache, step = out.past_key_values, new[-1:]
    return new, margins


def moe_layer_io(ckpt_dir, token_ids: list[int], layer: int = 0):
    """(transformers' MoE module of ``layer``, its input [T, H], its output [T, H]) on one prompt, fp32."""
    model = load_oracle(ckpt_dir)
    moe, seen = model.model.layers[layer].mlp, {}
    handle = moe.register_forward_hook(lambda _m, inputs, output: seen.update(x=inputs[0][0], y=output[0]))
    try:
        logits(model, token_ids)
    finally:
        handle.remove()
    return moe, seen["x"], seen["y"]


def yarn_gaps(served: list[float | None], yarn_ckpt, plain_twin, token_ids: list[int], original_context: int):
    """Past ``original_context``: (max |served - oracle| prompt log-prob, max |plain-RoPE oracle - oracle|),
    the second showing how far a port without YaRN would be."""
    want = prompt_logprobs(load_oracle(yarn_ckpt), token_ids)
    plain = prompt_logprobs(load_oracle(plain_twin), token_ids)
    past = range(original_context + 1, len(token_ids))
    gaps = max(abs(served[t] - want[t]) for t in past), max(abs(plain[t] - want[t]) for t in past)
    print(f"positions {past.start}-{past.stop - 1}: max |d logprob| vs oracle {gaps[0]:.2e}; "
          f"plain RoPE vs YaRN oracle {gaps[1]:.2f}")
    return gaps
