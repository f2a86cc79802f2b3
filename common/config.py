"""One typed, validated view of a LongCat-Flash config.

Built from a Hub ``config.json`` dict, a transformers ``LongcatFlashConfig`` or an engine's own config
object. Field names are the checkpoint's: ``num_layers`` counts decoder layers (each holds two MLA
sublayers), never ``num_hidden_layers`` (transformers says 2 x num_layers there, SGLang 1 x).
"""

import math
from dataclasses import MISSING, dataclass, field, fields

from .ngram import NgramSpec
from .rope import YARN_DEFAULTS, yarn_mscale

ZERO_EXPERT_TYPES = ("identity",)
MLA_CPU_LATENT = 576  # kv_lora_rank + qk_rope_head_dim the engines' CPU MLA backends accept
LITE_ARCHITECTURE = "LongcatFlashNgramForCausalLM"  # Flash-Lite (n-gram embeddings: longcat_common.ngram)
# Flash-Chat / -Thinking, Thinking-2601 (and the oe_* n-gram spelling of Lite-Sparse / LongCat-2.0), Flash-Lite
ARCHITECTURES = ("LongcatFlashForCausalLM", "LongcatCausalLM", LITE_ARCHITECTURE)

# Fields of LongCat variants this package does not implement (field -> feature). Where the engine has a
# built-in class for the architecture, such a config is handed to it (unsupported_features); otherwise
# LongcatConfig refuses it at load.
UNSUPPORTED_FIELDS = {"index_topk": "sparse (indexer) attention"}

# name -> aliases an engine config object may use instead (transformers' attribute_map)
_ALIASES = {
    "n_routed_experts": ("num_local_experts",),
    "moe_topk": ("num_experts_per_tok",),
    "ffn_hidden_size": ("intermediate_size",),
    "expert_ffn_hidden_size": ("moe_intermediate_size",),
}


@dataclass(frozen=True)
class LongcatConfig:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    q_lora_rank: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    ffn_hidden_size: int
    expert_ffn_hidden_size: int
    n_routed_experts: int
    zero_expert_num: int
    zero_expert_type: str
    moe_topk: int
    routed_scaling_factor: float
    rope_theta: float
    rms_norm_eps: float = 1e-5
    max_position_embeddings: int = 131072
    mla_scale_q_lora: bool = True
    mla_scale_kv_lora: bool = True
    router_bias: bool = False
    norm_topk_prob: bool = False
    attention_bias: bool = False
    tie_word_embeddings: bool = False
    num_nextn_predict_layers: int = 0
    disable_quant_module: tuple = ()
    quantization_config: dict | None = field(default=None, compare=False)
    rope_scaling: dict | None = None  # None (plain RoPE) or YaRN's parameters, every key filled in
    ngram: NgramSpec | None = None  # Flash-Lite's n-gram embedding, None where the config has none

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: dict) -> "LongcatConfig":
        raw = dict(raw)
        for name, feature in unsupported_features(raw).items():
            raise ValueError(f"LongCat-Flash config: '{name}' ({feature}) is not supported "
                             "by longcat-flash-plugins")
        rope_params = raw.get("rope_parameters") or {}
        if raw.get("rope_theta") is None and "rope_theta" in rope_params:
            raw["rope_theta"] = rope_params["rope_theta"]
        raw["rope_scaling"] = _rope_scaling(raw.get("rope_scaling") or rope_params)
        values = {}
        for f in fields(cls):
            names = (f.name,) + _ALIASES.get(f.name, ())
            found = [raw[n] for n in names if raw.get(n) is not None]
            if found:
                values[f.name] = found[0]
            elif _required(f):
                raise ValueError(f"LongCat-Flash config: required field '{f.name}' is missing")
        values["disable_quant_module"] = tuple(values.get("disable_quant_module") or ())
        values["ngram"] = NgramSpec.from_config(raw)
        config = cls(**values)
        config.validate()
        return config

    @classmethod
    def from_hf(cls, hf_config) -> "LongcatConfig":
        """From any config object (transformers, vLLM, SGLang) or a dict."""
        if isinstance(hf_config, dict):
            return cls.from_dict(hf_config)
        raw = dict(getattr(hf_config, "__dict__", {}))
        for f in fields(cls):
            for name in (f.name,) + _ALIASES.get(f.name, ()):
                if raw.get(f.name) is None and getattr(hf_config, name, None) is not None:
                    raw[f.name] = getattr(hf_config, name)
        return cls.from_dict(raw)

    def validate(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type is int and (not isinstance(value, int) or isinstance(value, bool)):
                raise ValueError(f"LongCat-Flash config: '{f.name}' must be an integer, got {value!r}")
        positive = ("vocab_size", "hidden_size", "num_layers", "num_attention_heads", "q_lora_rank",
                    "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
                    "ffn_hidden_size", "expert_ffn_hidden_size", "n_routed_experts", "moe_topk")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"LongCat-Flash config: '{name}' must be positive, got {getattr(self, name)}")
        if self.zero_expert_num < 0:
            raise ValueError(f"LongCat-Flash config: 'zero_expert_num' must be >= 0, got {self.zero_expert_num}")
        if self.zero_expert_num and self.zero_expert_type not in ZERO_EXPERT_TYPES:
            raise ValueError(f"LongCat-Flash config: unknown zero_expert_type {self.zero_expert_type!r} "
                             f"(supported: {', '.join(ZERO_EXPERT_TYPES)})")
        if self.moe_topk > self.num_experts_total:
            raise ValueError(f"LongCat-Flash config: 'moe_topk' ({self.moe_topk}) exceeds n_routed_experts + "
                             f"zero_expert_num ({self.num_experts_total})")
        if self.qk_rope_head_dim % 2:
            raise ValueError(f"LongCat-Flash config: 'qk_rope_head_dim' must be even, got {self.qk_rope_head_dim}")
        if not self.routed_scaling_factor > 0:
            raise ValueError("LongCat-Flash config: 'routed_scaling_factor' must be positive, "
                             f"got {self.routed_scaling_factor}")
        for name in ("norm_topk_prob", "router_bias"):
            if getattr(self, name):
                raise ValueError(f"LongCat-Flash config: '{name}=true' is not part of any LongCat-Flash "
                                 "release and is not supported")
        unknown = set(self.disable_quant_module) - {"self_attn", "mlps", "mtp"}
        if unknown:
            raise ValueError(f"LongCat-Flash config: unknown 'disable_quant_module' entries {sorted(unknown)}")

    # ---- derived figures ----------------------------------------------------------------------
    @property
    def num_experts_total(self) -> int:
        """Router width: real experts then zero experts, ids [0, n_routed) and [n_routed, total)."""
        return self.n_routed_experts + self.zero_expert_num

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def num_attention_layers(self) -> int:
        """KV-cache layers: two MLA sublayers per decoder layer."""
        return 2 * self.num_layers

    def attention_params(self) -> int:
        h, heads = self.hidden_size, self.num_attention_heads
        return (h * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * heads * self.qk_head_dim
                + h * (self.kv_lora_rank + self.qk_rope_head_dim) + self.kv_lora_rank
                + self.kv_lora_rank * heads * (self.qk_nope_head_dim + self.v_head_dim)
                + heads * self.v_head_dim * h)

    def expert_params(self) -> int:
        return 3 * self.hidden_size * self.expert_ffn_hidden_size

    def _dense_layer_params(self) -> int:
        """Everything in one decoder layer a token always runs: 2 attentions, 2 dense MLPs, 4 norms, router."""
        h = self.hidden_size
        return (2 * self.attention_params() + 2 * 3 * h * self.ffn_hidden_size + 4 * h
                + self.num_experts_total * (h + 1))

    def total_params(self) -> int:
        """All main-model parameters (MTP excluded)."""
        embeddings = self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)
        per_layer = self._dense_layer_params() + self.n_routed_experts * self.expert_params()
        return embeddings + self.hidden_size + self.num_layers * per_layer

    def activated_params(self, real_experts_per_token: int) -> int:
        """Parameters used per token when ``real_experts_per_token`` of the top-k slots pick real experts.

        The embedding lookup is not counted as compute (the paper's 18.6B-31.3B convention).
        """
        if not 0 <= real_experts_per_token <= self.moe_topk:
            raise ValueError(f"real_experts_per_token must be in [0, {self.moe_topk}]")
        per_layer = self._dense_layer_params() + real_experts_per_token * self.expert_params()
        return self.vocab_size * self.hidden_size + self.hidden_size + self.num_layers * per_layer

    def mla_lora_scales(self) -> tuple[float, float]:
        """(q scale, kv-latent scale): sqrt(H / q_lora_rank), sqrt(H / kv_lora_rank), or 1 where disabled."""
        q = math.sqrt(self.hidden_size / self.q_lora_rank) if self.mla_scale_q_lora else 1.0
        kv = math.sqrt(self.hidden_size / self.kv_lora_rank) if self.mla_scale_kv_lora else 1.0
        return q, kv

    def softmax_scale(self) -> float:
        """1/sqrt(qk_head_dim), times mscale(factor, mscale_all_dim)^2 under YaRN (DeepSeek-V3's rule,
        which Thinking-2601 uses; transformers' ``yarn_apply_mscale``, vLLM's and SGLang's DeepSeek MLA)."""
        scale = self.qk_head_dim ** -0.5
        if self.rope_scaling and self.rope_scaling["mscale_all_dim"]:
            scale *= yarn_mscale(self.rope_scaling["factor"], self.rope_scaling["mscale_all_dim"]) ** 2
        return scale

    def fp8_block_size(self) -> tuple[int, int] | None:
        """The checkpoint's FP8 block shape, None for an unquantised checkpoint; other schemes raise."""
        qc = self.quantization_config
        if not qc:
            return None
        method, block = qc.get("quant_method"), qc.get("weight_block_size")
        if method != "fp8" or not block or len(block) != 2:
            raise ValueError(f"LongCat-Flash: unsupported quantization_config {qc!r}; supported is block FP8 "
                             "(quant_method 'fp8' with weight_block_size [128, 128])")
        return tuple(block)


def config_value(config, name: str):
    """Field ``name`` of a config.json dict or of any engine's config object; None where it is absent."""
    return config.get(name) if isinstance(config, dict) else getattr(config, name, None)


def unsupported_features(config) -> dict[str, str]:
    """The fields of ``config`` (a config.json dict or any engine's config object) that turn on a LongCat
    feature this package does not implement -> that feature, in UNSUPPORTED_FIELDS' order; {} when we serve it."""
    return {name: feature for name, feature in UNSUPPORTED_FIELDS.items() if config_value(config, name)}


def unsupported_reason(config) -> str | None:
    """``"oe_vocab_size_ratio, use_ngram_embedding (n-gram ...); index_topk (sparse (indexer) attention)"``
    (each feature once, after the fields that turn it on) for a config we do not serve, None otherwise."""
    fields_of = {}
    for name, feature in unsupported_features(config).items():
        fields_of.setdefault(feature, []).append(name)
    return "; ".join(f"{', '.join(names)} ({feature})" for feature, names in fields_of.items()) or None


def _required(f) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def _rope_scaling(rope: dict) -> dict | None:
    """config.json's ``rope_scaling`` (or transformers' ``rope_parameters``) -> None for plain RoPE, or
    YaRN's parameters with defaults filled in. Other scaling types raise, naming the type."""
    kind = rope.get("rope_type", rope.get("type", "default")) if rope else "default"
    if kind in ("default", None):
        return None
    if kind not in ("yarn", "deepseek_yarn"):  # vLLM's DeepSeek MLA renames yarn in place
        raise ValueError(f"LongCat-Flash config: rope scaling type {kind!r} is not supported (plain RoPE or yarn)")
    for name in ("factor", "original_max_position_embeddings"):
        if rope.get(name) is None:
            raise ValueError(f"LongCat-Flash config: yarn rope scaling needs '{name}'")
    if rope.get("attention_factor") not in (None, 1.0) or not rope["factor"] >= 1:
        raise ValueError(f"LongCat-Flash config: unsupported yarn parameters {rope!r} "
                         "(need factor >= 1 and no attention_factor)")
    yarn = {k: float(rope[k]) if rope.get(k) is not None else v for k, v in YARN_DEFAULTS.items()}
    return {**yarn, "factor": float(rope["factor"]),
            "original_max_position_embeddings": int(rope["original_max_position_embeddings"])}
