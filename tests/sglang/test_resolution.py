"""What SGLang builds for each LongCat config once our plugin has loaded: the record (resolution_run.py, one
process, as a server loads the plugins). A literal table, so an SGLang release that moves LongCat elsewhere,
or a config field that changes hands, fails here naming the class.

Our classes serve Flash-Chat / -Thinking / Thinking-2601 and Flash-Lite (n-gram embeddings, either
spelling); a config with sparse indexer attention goes to SGLang's own classes, under every architecture
name SGLang takes as LongCat. SGLang's own class cannot be built on CPU for it (docs/sglang.md): the build
column records SGLang's error, which proves its class, not a refusal of ours, is what runs. Flash-Lite
servers come up with our class in test_lite.py.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from longcat_common import __version__
from longcat_common.testing.tiny import write_checkpoint

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("LongcatFlashForCausalLM", "LongcatCausalLM", "LongcatFlashNgramForCausalLM")
VARIANTS = {  # config fields -> the variant that declares them (LONGCAT_SPEC.md section 11)
    "chat": {},
    "ngram": {"ngram_vocab_size_ratio": 2, "emb_neighbor_num": 2, "emb_split_num": 2},  # Flash-Lite
    "oe": {"oe_vocab_size_ratio": 2, "oe_neighbor_num": 2, "oe_split_num": 2},  # Lite-Sparse / 2.0 spelling
    "sparse": {"index_topk": 16, "index_n_heads": 2, "index_head_dim": 32},
    "oe+sparse": {"oe_vocab_size_ratio": 2, "oe_neighbor_num": 2, "oe_split_num": 2,
                  "index_topk": 16, "index_n_heads": 2, "index_head_dim": 32},  # Lite-Sparse, LongCat-2.0
}

OURS = ("longcat_sglang.model:LongcatFlashForCausalLM", "longcat_sglang.mtp:LongcatFlashForCausalLMNextN")
SGLANGS = ("sglang.srt.models.longcat_flash:LongcatFlashForCausalLM",
           "sglang.srt.models.longcat_flash_nextn:LongcatFlashForCausalLMNextN")
SPARSE = "index_topk (sparse (indexer) attention)"
NO_GPU = "RuntimeError: Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU and installed " \
         "a driver from http://www.nvidia.com/Download/index.aspx"
NO_ROPE_PARAMETERS = "TypeError: argument of type 'NoneType' is not iterable"
# variant -> (target class, draft class, why handed back or None, building the target on CPU), any name
EXPECTED = {
    "chat": (*OURS, None, "built"),
    "ngram": (*OURS, None, "built"),
    "oe": (*OURS, None, "built"),
    "sparse": (*SGLANGS, SPARSE, NO_ROPE_PARAMETERS),  # rope_parameters is None under transformers 5.19
    "oe+sparse": (*SGLANGS, SPARSE, NO_GPU),  # SGLang's NgramEmbedding allocates on "cuda"
}
REGISTRY = {  # ModelRegistry by name: SGLang's config loader renames every LongCat name to the first
    "LongcatFlashForCausalLM": OURS[0],
    "LongcatCausalLM": "sglang.srt.models.transformers:TransformersForCausalLM",
    "LongcatFlashNgramForCausalLM": "sglang.srt.models.transformers:TransformersForCausalLM",
    "LongcatFlashForCausalLMNextN": OURS[1],
}


@pytest.fixture(scope="module")
def record(tmp_path_factory) -> dict:
    """{(architecture, variant): the run's record}, and "registry"; one process for every config."""
    weights = write_checkpoint(tmp_path_factory.mktemp("weights"), preset="tiny")
    base = json.loads((weights / "config.json").read_text())
    dirs = {}
    for name in NAMES:
        for variant, fields in VARIANTS.items():
            d = tmp_path_factory.mktemp(f"{name}-{variant}")
            for f in weights.iterdir():
                if f.name != "config.json":
                    (d / f.name).symlink_to(f)
            (d / "config.json").write_text(json.dumps({**base, "architectures": [name], **fields}))
            dirs[name, variant] = str(d)
    out = tmp_path_factory.mktemp("record") / "record.json"
    subprocess.run([sys.executable, "-m", "tests.sglang.resolution_run", str(out), *dirs.values()], cwd=ROOT,
                   check=True, env={**os.environ, "SGLANG_CPU_OMP_THREADS_BIND": "0"})
    raw = json.loads(out.read_text())
    return {"registry": raw["registry"], "dirs": dirs, **{key: raw[path] for key, path in dirs.items()}}


def test_registry_names(record):
    assert record["registry"] == REGISTRY


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", NAMES)
def test_each_longcat_config_resolves_to_its_class(record, name, variant):
    target, draft, reason, build = EXPECTED[variant]
    got = record[name, variant]
    assert (got["target"], got["draft"], got["build"]) == (target, draft, build)
    if reason is None:
        assert got["log"] == [f"longcat-flash-plugins {__version__}: LongcatFlashForCausalLM served by "
                              "longcat_sglang (rope plain, device cpu, tp 1, moe ep 1, attn dp 1, fp8 False)"]
    else:
        prefix = f"longcat-flash-plugins: config has {reason}, not implemented here: served by SGLang's built-in"
        assert got["log"] == [f"{prefix} LongcatFlashForCausalLM (sglang.srt.models.longcat_flash)",
                              f"{prefix} LongcatFlashForCausalLMNextN (sglang.srt.models.longcat_flash_nextn)"]

