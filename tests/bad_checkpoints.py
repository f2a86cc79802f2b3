"""Broken copies of a generated checkpoint, each with the error message a loader must give for it.

``BAD_CHECKPOINTS``: name -> (the session fixture of the checkpoint it breaks, the function writing the
broken copy and returning (path, message)). All but ``AT_LOAD`` are found at start-up, from config.json
and the shards' headers, before the engine starts a worker. docs/bad-checkpoints.md lists the messages.
"""

import json
import math
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

EXPERT = "model.layers.0.mlp.experts.3.up_proj.weight"
ROUTER_BIAS = "model.layers.1.mlp.router.e_score_correction_bias"
EXTRA = "model.layers.0.mlp.shared_experts.up_proj.weight"  # a name from another model family


def _edit_tensors(src: Path, dst: Path, name: str, edit) -> Path:
    """A copy of ``src`` in which tensor ``name`` is ``edit(tensors)`` applied to its shard's dict."""
    shutil.copytree(src, dst)
    index_file = dst / "model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    shard = dst / index["weight_map"][name]
    tensors = load_file(shard)
    before = set(tensors)
    edit(tensors)
    for removed in before - set(tensors):
        del index["weight_map"][removed]
    index["weight_map"].update((added, shard.name) for added in set(tensors) - before)
    index_file.write_text(json.dumps(index))
    save_file(tensors, shard, metadata={"format": "pt"})
    return dst


def _edit_tensor(src: Path, dst: Path, name: str, edit) -> Path:
    def replace(tensors):
        new = edit(tensors.pop(name))
        if new is not None:
            tensors[name] = new
    return _edit_tensors(src, dst, name, replace)


def wrong_expert_shape(src: Path, dst: Path) -> tuple[Path, str]:
    path = _edit_tensor(src, dst, EXPERT, lambda t: t[:, : t.shape[1] // 2].contiguous())
    return path, f"tensor '{EXPERT}' has shape"


def missing_router_bias(src: Path, dst: Path) -> tuple[Path, str]:
    return _edit_tensor(src, dst, ROUTER_BIAS, lambda t: None), f"missing tensors ['{ROUTER_BIAS}']"


def extra_tensor(src: Path, dst: Path) -> tuple[Path, str]:
    def add(tensors):
        tensors[EXTRA] = tensors[EXPERT].clone()
    return _edit_tensors(src, dst, EXPERT, add), f"unexpected tensor '{EXTRA}'"


def wrong_fp8_scale_shape(src: Path, dst: Path) -> tuple[Path, str]:
    """One 128x128-block scale row too many (as a checkpoint quantised with another block size would have)."""
    scale = EXPERT + "_scale_inv"
    path = _edit_tensor(src, dst, scale, lambda t: t.repeat(2, 1))
    return path, f"tensor '{scale}' has shape"


def nan_and_inf_in_a_weight(src: Path, dst: Path) -> tuple[Path, str]:
    def poison(t):
        t = t.clone()
        t[0, 0], t[1, 1] = math.nan, math.inf
        return t
    return _edit_tensor(src, dst, EXPERT, poison), f"tensor '{EXPERT}' holds 1 NaN and 1 Inf values"


def truncated_shard(src: Path, dst: Path) -> tuple[Path, str]:
    shutil.copytree(src, dst)
    shard = dst / json.loads((dst / "model.safetensors.index.json").read_text())["weight_map"][EXPERT]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) * 2 // 3])
    return dst, f"shard '{shard.name}' is truncated"


def _edit_config(src: Path, dst: Path, changes: dict) -> Path:
    """A copy of ``src`` with config.json updated (a None value deletes the key)."""
    shutil.copytree(src, dst)
    config = {**json.loads((dst / "config.json").read_text()), **changes}
    (dst / "config.json").write_text(json.dumps({k: v for k, v in config.items() if v is not None}, indent=2))
    return dst


def unknown_zero_expert_type(src: Path, dst: Path) -> tuple[Path, str]:
    return _edit_config(src, dst, {"zero_expert_type": "constant"}), "unknown zero_expert_type 'constant'"


def zero_expert_num_missing(src: Path, dst: Path) -> tuple[Path, str]:
    return _edit_config(src, dst, {"zero_expert_num": None}), "required field 'zero_expert_num' is missing"


def moe_topk_above_expert_count(src: Path, dst: Path) -> tuple[Path, str]:
    config = json.loads((src / "config.json").read_text())
    total = config["n_routed_experts"] + config["zero_expert_num"]
    return (_edit_config(src, dst, {"moe_topk": total + 1}),
            f"'moe_topk' ({total + 1}) exceeds n_routed_experts + zero_expert_num ({total})")


def ngram_spellings_disagree(src: Path, dst: Path) -> tuple[Path, str]:
    """Flash-Lite's n-gram fields in both spellings (ngram_* / oe_*), saying different things."""
    changes = {"ngram_vocab_size_ratio": 2, "emb_neighbor_num": 4, "emb_split_num": 3,
               "oe_vocab_size_ratio": 2, "oe_neighbor_num": 3, "oe_split_num": 3}
    return _edit_config(src, dst, changes), "LongCat n-gram config: both spellings are set and disagree"


BAD_CHECKPOINTS = {f.__name__: (source, f) for source, f in (
    ("tiny_ckpt", missing_router_bias), ("tiny_ckpt", extra_tensor), ("tiny_ckpt", wrong_expert_shape),
    ("tiny_fp8_ckpt", wrong_fp8_scale_shape), ("tiny_ckpt", nan_and_inf_in_a_weight), ("tiny_ckpt", truncated_shard),
    ("tiny_ckpt", unknown_zero_expert_type), ("tiny_ckpt", zero_expert_num_missing),
    ("tiny_ckpt", moe_topk_above_expert_count), ("tiny_ckpt", ngram_spellings_disagree))}
AT_LOAD = ("nan_and_inf_in_a_weight",)  # needs the values: found as the weights stream through the loader
STARTED = ("missing_router_bias",)  # a start-up case also run as a whole engine start (the rest share one process)


MTP_EH_PROJ = "model.mtp.layers.0.eh_proj.weight"


def wrong_mtp_shape(src: Path, dst: Path) -> tuple[Path, str]:
    path = _edit_tensor(src, dst, MTP_EH_PROJ, lambda t: t[:, : t.shape[1] // 2].contiguous())
    return path, f"LongCat-Flash checkpoint (MTP layer): tensor '{MTP_EH_PROJ}' has shape"


# broken only in the MTP layer: the main model loads, the draft must refuse with the message
BAD_MTP_CHECKPOINTS = {f.__name__: f for f in (wrong_mtp_shape,)}
