"""The engine-version check both adapters run once at registration (longcat_common.versions)."""

import pytest

from longcat_common.versions import version_problem
from longcat_sglang import compat as sglang_compat
from longcat_vllm import compat as vllm_compat


@pytest.mark.parametrize("installed", ["0.32.0", "0.32.1", "0.33.0", "0.33.1rc1", "0.32.0+cpu"])
def test_vllm_releases_in_range_pass_silently(installed):
    assert version_problem("vLLM", installed, vllm_compat.SUPPORTED, vllm_compat.TRANSFORMERS) is None


@pytest.mark.parametrize("installed", ["0.31.2", "0.34.0", "1.0.0"])
def test_vllm_releases_out_of_range_get_one_line_naming_both_versions(installed):
    line = version_problem("vLLM", installed, vllm_compat.SUPPORTED, vllm_compat.TRANSFORMERS)
    assert f"vLLM {installed} is outside the supported range >=0.32,<0.34" in line
    assert "0.32: >=5.16.1,<5.20.0" in line and "\n" not in line


def test_sglang_range_is_its_one_release():
    check = lambda v: version_problem("SGLang", v, sglang_compat.SUPPORTED, sglang_compat.TRANSFORMERS)
    assert check("0.5.23") is None
    assert "SGLang 0.5.24 is outside the supported range ==0.5.23" in check("0.5.24")
