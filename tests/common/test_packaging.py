"""The package as people install it: pyproject metadata, the wheel's contents, extras = the compat ranges."""

import ast
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

import longcat_common
from longcat_sglang import compat as sglang_compat
from longcat_vllm import compat as vllm_compat

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ("common", "longcat_vllm", "longcat_sglang")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(ROOT)], check=True, cwd=out)
    (path,) = out.glob("longcat_flash_plugins-*.whl")
    return zipfile.ZipFile(path)


def test_extras_admit_exactly_the_supported_engine_ranges():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["vllm"] == [f"vllm{vllm_compat.SUPPORTED}"]
    assert extras["sglang"] == [f"sglang{sglang_compat.SUPPORTED}"]


def test_wheel_carries_runtime_code_the_generator_and_the_licence_only(wheel):
    names = wheel.namelist()
    packages = {n.rsplit("/", 1)[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert packages == {"longcat_common", "longcat_common/testing", "longcat_vllm", "longcat_sglang"}
    assert all(n.endswith(".py") for n in names if not n.split("/")[0].endswith(".dist-info"))
    source = {f"{pkg}/{p.name}" for d, pkg in (("common", "longcat_common"), ("common/testing", "longcat_common/testing"),
                                                ("longcat_vllm", "longcat_vllm"), ("longcat_sglang", "longcat_sglang"))
              for p in (ROOT / d).glob("*.py")}
    assert source == {n for n in names if n.endswith(".py")}
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_metadata_version_licence_readme_and_entry_points(wheel):
    dist = next(n.split("/")[0] for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    meta = Parser().parsestr(wheel.read(f"{dist}/METADATA").decode())
    assert meta["Version"] == longcat_common.__version__
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta.get_payload().strip() == (ROOT / "README.md").read_text().strip()
    requires = {(r.name, r.specifier, str(r.marker)) for r in map(Requirement, meta.get_all("Requires-Dist"))}
    for engine, compat in (("vllm", vllm_compat), ("sglang", sglang_compat)):
        assert (engine, SpecifierSet(compat.SUPPORTED), f'extra == "{engine}"') in requires
    assert {name for name, _, marker in requires if marker == "None"} == {"torch", "safetensors", "packaging"}
    entry_points = wheel.read(f"{dist}/entry_points.txt").decode()
    groups = {line.strip("[]") for line in entry_points.splitlines() if line.startswith("[")}
    assert groups == {"vllm.general_plugins", "sglang.srt.plugins"}  # one each: nothing that loads for every model


def test_no_runtime_module_imports_the_test_checkpoint_generator():
    for d in RUNTIME:
        for path in (ROOT / d).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                else:
                    continue
                assert not any("testing" in n.split(".") for n in names), f"{path} imports {names}"
