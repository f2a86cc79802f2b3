"""Broken copies of a generated checkpoint, each with the error message a loader must give for it."""

import json
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

EXPERT = "model.layers.0.mlp.experts.3.up_proj.weight"
ROUTER_BIAS = "model.layers.1.mlp.router.e_score_correction_bias"


def _edit_tensor(src: Path, dst: Path, name: str, edit) -> Path:
    shutil.copytree(src, dst)
    index_file = dst / "model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    shard = dst / index["weight_map"][name]
    tensors = load_file(shard)
    new = edit(tensors.pop(name))
    if new is None:
        del index["weight_map"][name]
        index_file.write_text(json.dumps(index))
    else:
        tensors[name] = new
    save_file(tensors, shard, metadata={"format": "pt"})
    return dst


def wrong_expert_shape(src: Path, dst: Path) -> tuple[Path, str]:
    path = _edit_tensor(src, dst, EXPERT, lambda t: t[:, : t.shape[1] // 2].contiguous())
    return path, f"tensor '{EXPERT}' has shape"


def missing_router_bias(src: Path, dst: Path) -> tuple[Path, str]:
    return _edit_tensor(src, dst, ROUTER_BIAS, lambda t: None), f"missing tensors ['{ROUTER_BIAS}']"


def _edit_config(src: Path, dst: Path, changes: dict) -> Path:
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({**config, **changes}, indent=2))
    return dst


def unknown_zero_expert_type(src: Path, dst: Path) -> tuple[Path, str]:
    return _edit_config(src, dst, {"zero_expert_type": "constant"}), "unknown zero_expert_type 'constant'"


def ngram_embeddings(src: Path, dst: Path) -> tuple[Path, str]:
    """LongCat-Flash-Lite's n-gram embedding fields, which this package does not implement."""
    changes = {"ngram_vocab_size_ratio": 78, "emb_neighbor_num": 4, "emb_split_num": 4}
    return _edit_config(src, dst, changes), "(n-gram embeddings (LongCat-Flash-Lite)) is not supported"


BAD_CHECKPOINTS = {f.__name__: f for f in (wrong_expert_shape, missing_router_bias, unknown_zero_expert_type,
                                            ngram_embeddings)}


MTP_EH_PROJ = "model.mtp.layers.0.eh_proj.weight"


def wrong_mtp_shape(src: Path, dst: Path) -> tuple[Path, str]:
    path = _edit_tensor(src, dst, MTP_EH_PROJ, lambda t: t[:, : t.shape[1] // 2].contiguous())
    return path, f"LongCat-Flash checkpoint (MTP layer): tensor '{MTP_EH_PROJ}' has shape"


# broken only in the MTP layer: the main model loads, the draft must refuse with the message
BAD_MTP_CHECKPOINTS = {f.__name__: f for f in (wrong_mtp_shape,)}
