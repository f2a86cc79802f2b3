"""LongCat-Flash checkpoint names and shapes, and how they map onto the adapters' parameters.

Checkpoint (Hub) layout, per decoder layer l and sublayer i in {0, 1}:
    model.layers.{l}.{input_layernorm,post_attention_layernorm}.{i}.weight      [H]
    model.layers.{l}.self_attn.{i}.{q_a_proj,q_b_proj,kv_a_proj_with_mqa,kv_b_proj,o_proj}.weight
    model.layers.{l}.self_attn.{i}.{q_a_layernorm,kv_a_layernorm}.weight
    model.layers.{l}.mlps.{i}.{gate_proj,up_proj,down_proj}.weight
    model.layers.{l}.mlp.router.classifier.weight  [E, H] fp32,  mlp.router.e_score_correction_bias [E] fp32
    model.layers.{l}.mlp.experts.{e}.{gate_proj,up_proj,down_proj}.weight  (real experts only)
    model.mtp.*  (the MTP draft layer; the main model skips it)
    Flash-Lite: the n-gram tables and projections (longcat_common.ngram: both spellings), never quantised
FP8 checkpoints add ``<linear>.weight_scale_inv`` beside every quantised linear weight.

Both adapters name their parameters the same way, so one table maps checkpoint names onto them (Flash-Lite's
n-gram tables and projections: NGRAM_TABLES / NGRAM_PROJECTION, shard id = the table's index):
``fused_qkv_a_proj`` = [q_a_proj; kv_a_proj_with_mqa], ``gate_up_proj`` = [gate_proj; up_proj],
``mlp.experts.w13_*`` (gate = w1, up = w3) and ``mlp.experts.w2_*`` (down) for the routed experts.

The MTP draft models are laid out like a one-layer main model (``mtp_param_target``):
``model.mtp.layers.0.X`` -> ``model.layers.0.X`` with ``enorm.m`` / ``hnorm.m`` -> ``enorm`` / ``hnorm`` and
``transformer_layer.mlp`` -> ``mlp``, ``model.mtp.norm`` -> ``model.norm`` (the final norm),
``model.mtp.embed_tokens`` -> ``model.embed_tokens``; then the same stacking as the main model.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .config import LongcatConfig

MTP_PREFIX = "model.mtp."
MTP_EMBEDDING = "model.mtp.embed_tokens.weight"  # optional: the draft may share the target's embedding
_MTP_RENAMES = ((".enorm.m.", ".enorm."), (".hnorm.m.", ".hnorm."), (".transformer_layer.mlp.", ".mlp."))

# (param fragment, checkpoint fragment, shard id)
STACKED_PARAMS = (
    ("fused_qkv_a_proj", "q_a_proj", 0),
    ("fused_qkv_a_proj", "kv_a_proj_with_mqa", 1),
    ("gate_up_proj", "gate_proj", 0),
    ("gate_up_proj", "up_proj", 1),
)
EXPERT_SHARDS = {"gate_proj": ("w13", "w1"), "up_proj": ("w13", "w3"), "down_proj": ("w2", "w2")}
# Flash-Lite's n-gram tensors (both spellings) -> the adapters' two parameters: the tables concatenated
# (longcat_common.ngram.NgramSpec.table_offsets) and the projections side by side, shard id = table index
NGRAM_TABLES, NGRAM_PROJECTION = "model.ngram_embedding.tables.weight", "model.ngram_embedding.projection"
_NGRAM_RE = {NGRAM_TABLES: re.compile(r"^model\.(?:ngram_embeddings\.embedders\.|oe_embed_tokens)(\d+)\.weight$"),
             NGRAM_PROJECTION: re.compile(r"^model\.(?:ngram_embeddings\.post_projs\.|oe_embed_proj)(\d+)\.weight$")}
_EXPERT_RE = re.compile(r"^(.*\.mlp\.experts)\.(\d+)\.(gate_proj|up_proj|down_proj)\.(weight|weight_scale_inv)$")


@dataclass(frozen=True)
class ParamTarget:
    """Where one checkpoint tensor goes: parameter name, shard id (int or 'w1'/'w2'/'w3'), expert id."""

    param: str
    shard: int | str | None = None
    expert: int | None = None


def is_mtp(name: str) -> bool:
    return name.startswith(MTP_PREFIX)


def param_target(name: str) -> ParamTarget:
    """Checkpoint name of a main-model tensor -> its parameter in the adapters' models."""
    for param, pattern in _NGRAM_RE.items():
        match = pattern.match(name)
        if match:
            return ParamTarget(param, int(match.group(1)))
    match = _EXPERT_RE.match(name)
    if match:
        prefix, expert, proj, kind = match.groups()
        stem, shard = EXPERT_SHARDS[proj]
        return ParamTarget(f"{prefix}.{stem}_{kind}", shard, int(expert))
    if ".mlp.experts." not in name:
        for param, ckpt, shard in STACKED_PARAMS:
            if f".{ckpt}." in name:
                return ParamTarget(name.replace(f".{ckpt}.", f".{param}."), shard)
    return ParamTarget(name)


def mtp_param_target(name: str) -> ParamTarget:
    """Checkpoint name of an MTP tensor (``model.mtp.*``) -> its parameter in the adapters' draft models."""
    name = "model." + name[len(MTP_PREFIX):]
    for old, new in _MTP_RENAMES:
        name = name.replace(old, new)
    return param_target(name)


def _linear_shapes(config: LongcatConfig, attn: str, mlp: str, mlp_names, ffn: int):
    h, heads = config.hidden_size, config.num_attention_heads
    yield f"{attn}.q_a_proj", (config.q_lora_rank, h)
    yield f"{attn}.q_b_proj", (heads * config.qk_head_dim, config.q_lora_rank)
    yield f"{attn}.kv_a_proj_with_mqa", (config.kv_lora_rank + config.qk_rope_head_dim, h)
    yield f"{attn}.kv_b_proj", (heads * (config.qk_nope_head_dim + config.v_head_dim), config.kv_lora_rank)
    yield f"{attn}.o_proj", (h, heads * config.v_head_dim)
    for proj, shape in zip(mlp_names, ((ffn, h), (ffn, h), (h, ffn))):
        yield f"{mlp}.{proj}", shape


def _norm_shapes(config: LongcatConfig, attn: str):
    yield f"{attn}.q_a_layernorm.weight", (config.q_lora_rank,)
    yield f"{attn}.kv_a_layernorm.weight", (config.kv_lora_rank,)


def checkpoint_shapes(config: LongcatConfig, include_mtp: bool = True) -> dict[str, tuple[tuple, bool]]:
    """Every checkpoint tensor name -> (shape, quantisable): quantisable linears get a weight_scale_inv in FP8.

    Linear weights are listed with their ``.weight`` suffix; the router, norms, embeddings and lm_head
    are never quantised.
    """
    h, v = config.hidden_size, config.vocab_size
    skip = set(config.disable_quant_module)
    out: dict[str, tuple[tuple, bool]] = {"model.embed_tokens.weight": ((v, h), False),
                                          "model.norm.weight": ((h,), False)}
    if not config.tie_word_embeddings:
        out["lm_head.weight"] = ((v, h), False)
    dense = ("gate_proj", "up_proj", "down_proj")
    for layer in range(config.num_layers):
        p = f"model.layers.{layer}"
        for i in range(2):
            out[f"{p}.input_layernorm.{i}.weight"] = ((h,), False)
            out[f"{p}.post_attention_layernorm.{i}.weight"] = ((h,), False)
            for name, shape in _linear_shapes(config, f"{p}.self_attn.{i}", f"{p}.mlps.{i}", dense,
                                              config.ffn_hidden_size):
                module = "self_attn" if ".self_attn." in name else "mlps"
                out[f"{name}.weight"] = (shape, module not in skip)
            out.update((n, (s, False)) for n, s in _norm_shapes(config, f"{p}.self_attn.{i}"))
        out[f"{p}.mlp.router.classifier.weight"] = ((config.num_experts_total, h), False)
        out[f"{p}.mlp.router.e_score_correction_bias"] = ((config.num_experts_total,), False)
        ffn = config.expert_ffn_hidden_size
        for e in range(config.n_routed_experts):
            for proj, shape in zip(dense, ((ffn, h), (ffn, h), (h, ffn))):
                out[f"{p}.mlp.experts.{e}.{proj}.weight"] = (shape, True)
    if config.ngram:
        out.update((name, (shape, False)) for name, shape in config.ngram.shapes(h).items())
    if include_mtp:
        out.update(_mtp_shapes(config))
    return out


def _mtp_shapes(config: LongcatConfig):
    h, quant = config.hidden_size, "mtp" not in config.disable_quant_module
    for layer in range(config.num_nextn_predict_layers):
        p = f"{MTP_PREFIX}layers.{layer}"
        yield f"{p}.eh_proj.weight", ((h, 2 * h), quant)
        for norm in ("enorm.m", "hnorm.m", "input_layernorm", "post_attention_layernorm"):
            yield f"{p}.{norm}.weight", ((h,), False)
        for name, shape in _linear_shapes(config, f"{p}.self_attn", f"{p}.transformer_layer.mlp",
                                          ("gate_proj", "up_proj", "down_proj"), config.ffn_hidden_size):
            yield f"{name}.weight", (shape, quant)
        yield from ((n, (s, False)) for n, s in _norm_shapes(config, f"{p}.self_attn"))
    if config.num_nextn_predict_layers:
        yield f"{MTP_PREFIX}embed_tokens.weight", ((config.vocab_size, h), False)
        yield f"{MTP_PREFIX}norm.weight", ((h,), False)


def scale_inv_shape(shape: tuple, block: tuple[int, int]) -> tuple[int, int]:
    return (-(-shape[0] // block[0]), -(-shape[1] // block[1]))


def expected_tensors(config: LongcatConfig, include_mtp: bool = False) -> dict[str, tuple]:
    """name -> shape of every tensor a checkpoint of this config holds (scales too, for FP8)."""
    block = config.fp8_block_size()
    out = {}
    for name, (shape, quantisable) in checkpoint_shapes(config, include_mtp).items():
        out[name] = shape
        if block and quantisable:
            out[name + "_scale_inv"] = scale_inv_shape(shape, block)
    return out


class CheckpointChecker:
    """Checks a stream of checkpoint tensors against the config, passing them through.

    Checks the main model's tensors (``mtp=False``, MTP tensors skipped) or the MTP layer's
    (``mtp=True``, main-model tensors skipped; ``model.mtp.embed_tokens`` may be absent: the draft then
    shares the target's). Raises ``ValueError`` naming the tensor for an unexpected name or a wrong
    shape (both shapes given), and at the end of the stream for tensors that never came.
    ``may_be_absent(name)`` names the tensors an engine's loader is known to drop before the model sees
    them (e.g. vLLM's EP weight filter: other ranks' expert weights); every other absence is an error.
    """

    def __init__(self, config: LongcatConfig, *, mtp: bool = False, may_be_absent: Callable[[str], bool] | None = None):
        self.mtp = mtp
        self.what = "LongCat-Flash checkpoint (MTP layer)" if mtp else "LongCat-Flash checkpoint"
        if mtp and config.num_nextn_predict_layers < 1:
            raise ValueError(f"{self.what}: config.json has num_nextn_predict_layers="
                             f"{config.num_nextn_predict_layers}: this checkpoint has no MTP layer to draft with")
        self.expected = {n: s for n, s in expected_tensors(config, include_mtp=mtp).items() if is_mtp(n) == mtp}
        self.optional = {MTP_EMBEDDING} if mtp else set()
        self.may_be_absent = may_be_absent or (lambda _name: False)
        self.seen: set[str] = set()

    def __call__(self, weights):
        for name, tensor in weights:
            if is_mtp(name) != self.mtp or name.endswith("rotary_emb.inv_freq"):
                continue
            shape = self.expected.get(name)
            if shape is None:
                raise ValueError(f"{self.what}: unexpected tensor '{name}' {tuple(tensor.shape)} "
                                 "(not part of this config's model)")
            if tuple(tensor.shape) != tuple(shape):
                raise ValueError(f"{self.what}: tensor '{name}' has shape {tuple(tensor.shape)}, "
                                 f"the config expects {tuple(shape)}")
            bad = non_finite(tensor)
            if bad:
                raise ValueError(f"{self.what}: tensor '{name}' holds {bad}")
            self.seen.add(name)
            yield name, tensor
        missing = sorted(n for n in set(self.expected) - self.seen - self.optional if not self.may_be_absent(n))
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise ValueError(f"{self.what}: missing tensors {missing[:5]}{more}")


def non_finite(tensor: torch.Tensor) -> str | None:
    """None when every value is finite (meta tensors: unknown, None), else how many NaN / Inf values.

    One read of the tensor while all is well: ``torch.aminmax`` (NaN and +-Inf surface in the min or max),
    for e4m3 FP8 (NaN = all exponent and mantissa bits set; no Inf) one mask and max over the bytes.
    """
    if tensor.device.type == "meta" or not tensor.is_floating_point() or tensor.numel() == 0:
        return None
    if tensor.dtype == torch.float8_e4m3fn:
        low_bits = tensor.view(torch.uint8).bitwise_and(0x7F)
        return None if int(low_bits.max()) < 0x7F else f"{int((low_bits == 0x7F).sum())} NaN values"
    low, high = torch.aminmax(tensor)
    if bool(torch.isfinite(low) & torch.isfinite(high)):
        return None
    return f"{int(tensor.isnan().sum())} NaN and {int(tensor.isinf().sum())} Inf values"
