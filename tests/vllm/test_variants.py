"""LongCat variants we do not implement (sparse indexer attention) are served by vLLM's own class, exactly as
without the plugin, or refused naming the fields where vLLM has no class for the name; ours serves the rest,
n-gram embeddings (Flash-Lite) included (longcat_vllm/variants.py).

Every variant (none, n-gram embeddings, sparse indexer attention, both) under every LongCat architecture
name, plus the MTP draft, runs through variants_run.py: vLLM's engine config in a front process, then the
pickled config resolved and the model built (no weights) in a fresh process, as in a worker; the same
with our plugins switched off (VLLM_PLUGINS). Nothing is forwarded: vLLM's n-gram class and its LongCat
MoE need CUDA-only ops (docs/vllm.md, "Variants handed back").
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from longcat_common.config import unsupported_features, unsupported_reason
from longcat_common.testing.tiny import PRESETS, write_checkpoint

from .conftest import plugins_off_env

ROOT = Path(__file__).parents[2]
VARIANTS = {
    "none": {},
    "ngram": {k: PRESETS["lite"][k] for k in ("ngram_vocab_size_ratio", "emb_neighbor_num", "emb_split_num")},
    "sparse": {"index_topk": 4},
}
VARIANTS["both"] = {**VARIANTS["ngram"], **VARIANTS["sparse"]}
# Flash-Lite-Sparse / LongCat-2.0: n-gram fields in their oe_* spelling, with sparse attention
VARIANTS["oe+sparse"] = {"oe_vocab_size_ratio": 2, "oe_neighbor_num": 3, "oe_split_num": 2, **VARIANTS["sparse"]}
OURS = "longcat_vllm.model:LongcatFlashForCausalLM"
VLLM_FLASH = "vllm.model_executor.models.longcat_flash:LongcatFlashForCausalLM"
VLLM_NGRAM = "vllm.model_executor.models.longcat_flash_ngram:LongcatFlashNgramForCausalLM"
REFUSED = "refused"
# (architecture name, variant) -> the class that builds it with the plugin installed
EXPECTED = {
    ("LongcatFlashForCausalLM", "none"): OURS,
    ("LongcatFlashForCausalLM", "ngram"): OURS,
    ("LongcatFlashForCausalLM", "sparse"): VLLM_FLASH,
    ("LongcatFlashForCausalLM", "both"): VLLM_FLASH,
    ("LongcatFlashForCausalLM", "oe+sparse"): VLLM_FLASH,
    ("LongcatCausalLM", "none"): OURS,
    ("LongcatCausalLM", "ngram"): OURS,
    ("LongcatCausalLM", "sparse"): REFUSED,  # vLLM 0.32 has no class for the name
    ("LongcatCausalLM", "both"): REFUSED,
    ("LongcatCausalLM", "oe+sparse"): REFUSED,  # what Flash-Lite-Sparse and LongCat-2.0 ship
    ("LongcatFlashNgramForCausalLM", "none"): OURS,
    ("LongcatFlashNgramForCausalLM", "ngram"): OURS,  # Flash-Lite
    ("LongcatFlashNgramForCausalLM", "sparse"): VLLM_NGRAM,
    ("LongcatFlashNgramForCausalLM", "both"): VLLM_NGRAM,
    ("LongcatFlashNgramForCausalLM", "oe+sparse"): VLLM_NGRAM,
}
MTP = {"method": "mtp", "num_speculative_tokens": 1}
# MTP drafts of a Flash config: (variant, the draft's class)
EXPECTED_DRAFT = {"none": "longcat_vllm.mtp:LongcatFlashMTP",
                  "sparse": "vllm.model_executor.models.longcat_flash_mtp:LongCatFlashMTP"}


def case_name(arch: str, variant: str) -> str:
    return f"{arch}-{variant}"


def run(mode: str, spec: Path, out: Path, env: dict) -> tuple[dict, str]:
    proc = subprocess.run([sys.executable, "-m", "tests.vllm.variants_run", mode, str(spec), str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={**os.environ, "VLLM_LOGGING_LEVEL": "INFO", **env})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def log_by_case(log: str) -> dict[str, str]:
    return dict(re.findall(r"^CASE (\S+)\n(.*?)(?=^CASE |\Z)", log, re.M | re.S))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{"plugin" / "off": (front results, worker results, front log by case)}."""
    root = tmp_path_factory.mktemp("variants")
    spec = {}
    for (arch, variant) in EXPECTED:
        # the n-gram variant alone is ours: a Flash-Lite checkpoint (ours checks its tensors)
        path = write_checkpoint(root / "ckpt" / case_name(arch, variant), preset="lite" if variant == "ngram" else "tiny",
                                overrides={"architectures": [arch], **VARIANTS[variant]})
        spec[case_name(arch, variant)] = {"model": str(path)}
    for variant in EXPECTED_DRAFT:
        model = spec[case_name("LongcatFlashForCausalLM", variant)]["model"]
        spec[f"mtp-{variant}"] = {"model": model, "speculative": MTP}
    (root / "spec.json").write_text(json.dumps(spec))
    results = {}
    for name, env in (("plugin", {}), ("off", plugins_off_env())):
        (root / name).mkdir()
        front, log = run("front", root / "spec.json", root / name / "front.json", env)
        worker, _ = run("worker", root / "spec.json", root / name / "worker.json", env)
        results[name] = front, worker, log_by_case(log)
    return results


@pytest.mark.parametrize("arch, variant", list(EXPECTED))
def test_class_with_the_plugin(runs, arch, variant):
    front, worker, _ = runs["plugin"]
    case, want = case_name(arch, variant), EXPECTED[(arch, variant)]
    if want == REFUSED:
        error = front[case]["error"]
        assert unsupported_features(VARIANTS[variant])
        for field in unsupported_features(VARIANTS[variant]):
            assert field in error
        assert f"not implemented here, and vLLM 0.32.0 has no class of its own for {arch}: cannot serve it" in error
        assert case not in worker
        return
    assert front[case]["class"] == want
    assert worker[case]["class"] == want  # the pickled config resolves to the same class in a worker
    if want == OURS:
        assert worker[case]["construct"] is None


@pytest.mark.parametrize("arch, variant", [key for key, want in EXPECTED.items() if want not in (OURS, REFUSED)])
def test_handed_back_exactly_as_without_the_plugin(runs, arch, variant):
    """Same class in the front process and the worker, and the same construction result (the error text
    where vLLM's own class cannot be built) as vLLM without our plugins."""
    case = case_name(arch, variant)
    (front, worker, _), (off_front, off_worker, _) = runs["plugin"], runs["off"]
    assert front[case]["class"] == off_front[case]["class"]
    assert worker[case] == off_worker[case]


@pytest.mark.parametrize("arch, variant", list(EXPECTED))
def test_one_log_line_per_hand_back(runs, arch, variant):
    _, _, logs = runs["plugin"]
    lines = [line for line in logs[case_name(arch, variant)].splitlines() if "not implemented here" in line]
    if EXPECTED[(arch, variant)] in (VLLM_FLASH, VLLM_NGRAM):
        reason = unsupported_reason(VARIANTS[variant])
        want = f"longcat-flash-plugins: config has {reason}, not implemented here: served by vLLM's built-in {arch}"
        assert len(lines) == 1 and lines[0].endswith(want), lines
    else:  # ours, vLLM's own name, or refused (the error is the message: test_class_with_the_plugin)
        assert lines == []


@pytest.mark.parametrize("variant", list(EXPECTED_DRAFT))
def test_mtp_draft(runs, variant):
    (front, _, logs), (off_front, _, _) = runs["plugin"], runs["off"]
    case = f"mtp-{variant}"
    assert front[case]["draft"] == EXPECTED_DRAFT[variant]
    handed_back = [line for line in logs[case].splitlines() if "served by vLLM's built-in" in line]
    if variant == "none":
        assert handed_back == []
    else:
        assert front[case]["draft"] == off_front[case]["draft"]
        assert [line.rsplit(" ", 1)[1] for line in handed_back] == ["LongcatFlashForCausalLM", "LongCatFlashMTPModel"]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_thinking_2601_name_unknown_without_the_plugin(runs, variant):
    """Refusing the variants under LongcatCausalLM takes nothing away: vLLM 0.32 alone serves no config of that name."""
    off_front, _, _ = runs["off"]
    assert "Unrecognized model" in off_front[case_name("LongcatCausalLM", variant)]["error"]
