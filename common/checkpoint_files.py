"""Start-up check of a local checkpoint directory, before an engine starts any worker.

Reads config.json and only the headers of the safetensors shards (a few MB for a 560B checkpoint), so
every problem that does not need the weights' values stops the engine within seconds of its start
with one line: an invalid config, a shard that is missing or truncated, a tensor missing, unexpected
or mis-shaped (FP8 scales included). NaN / Inf values are found while the weights stream through the
loader (checkpoint.CheckpointChecker). The engines call this from their earliest hook
(longcat_vllm.plugin, longcat_sglang.plugin); a Hub id that is not a local directory is checked there,
from the engine's own config object and tensor stream, at load.
"""

import json
import struct
from pathlib import Path

import torch

from .checkpoint import CheckpointChecker
from .config import ARCHITECTURES, LongcatConfig

INDEX = "model.safetensors.index.json"
WHAT = "LongCat-Flash checkpoint"


def is_local_longcat(path) -> bool:
    """A local directory whose config.json names a LongCat-Flash architecture."""
    config = Path(path) / "config.json" if path else None
    if config is None or not config.is_file():
        return False
    return bool(set(json.loads(config.read_text()).get("architectures") or ()) & set(ARCHITECTURES))


def shard_tensors(shard: Path) -> dict[str, tuple]:
    """Tensor name -> shape from one shard's header; raises naming the shard if it is truncated."""
    size = shard.stat().st_size
    try:
        with open(shard, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if 8 + header_len > size:
                raise ValueError(f"header of {header_len} bytes")
            header = json.loads(f.read(header_len))
    except (struct.error, ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{WHAT}: shard '{shard.name}' is not a readable safetensors file ({size} bytes: "
                         f"{e})") from None
    header.pop("__metadata__", None)
    end = 8 + header_len + max((t["data_offsets"][1] for t in header.values()), default=0)
    if size < end:
        raise ValueError(f"{WHAT}: shard '{shard.name}' is truncated: {size} bytes, its header describes {end}")
    return {name: tuple(t["shape"]) for name, t in header.items()}


def check_checkpoint_dir(path) -> LongcatConfig:
    """Raises ValueError with one line naming the first problem; returns the checkpoint's config."""
    path = Path(path)
    config = LongcatConfig.from_dict(json.loads((path / "config.json").read_text()))
    index = path / INDEX
    names = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() \
        else sorted(p.name for p in path.glob("*.safetensors"))
    shapes = {}
    for name in names:
        if not (path / name).is_file():
            raise ValueError(f"{WHAT}: shard '{name}' named in {INDEX} is missing")
        shapes.update(shard_tensors(path / name))
    for _ in CheckpointChecker(config)((n, torch.empty(s, device="meta")) for n, s in shapes.items()):
        pass
    return config
