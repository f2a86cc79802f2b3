"""The SGLang releases this adapter supports, checked once when the plugin registers (plugin.register).

Version-dependent behaviour, where a release needs any, is chosen here and nowhere else. SUPPORTED is
also the ``[sglang]`` extra in pyproject.toml (tests/common/test_packaging.py keeps them equal);
docs/compatibility.md says what is tested, read or not covered for each release.
"""

import logging

from longcat_common.versions import version_problem

SUPPORTED = "==0.5.23"
TRANSFORMERS = {"0.5.23": "==5.19.0"}  # release -> the transformers version its wheel pins


def check_engine_version(logger: logging.Logger) -> None:
    import sglang

    problem = version_problem("SGLang", sglang.__version__, SUPPORTED, TRANSFORMERS)
    if problem:
        logger.warning(problem)
