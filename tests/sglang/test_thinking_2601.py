"""LongCat-Flash-Thinking-2601's config shape (``LongcatCausalLM``, no model_type, YaRN) served by our class
in SGLang (float32 server), matching the transformers oracle past the original context; a plain-RoPE model
of the same weights is far off there, so the test sees YaRN. SGLang itself loads a LongcatCausalLM
config as its LongcatFlashConfig (architecture LongcatFlashForCausalLM), which our class serves.
"""

import pytest

from tests import oracle
from tests.conftest import THINKING_2601
from tests.sglang.server import sglang_server

ORIGINAL_CONTEXT = THINKING_2601["rope_scaling"]["original_max_position_embeddings"]


@pytest.fixture(scope="module")
def server(yarn_ckpt, tmp_path_factory):
    with sglang_server(yarn_ckpt, tmp_path_factory.mktemp("sglang-2601") / "server.log",
                       args=["--dtype", "float32"]) as s:
        yield s


def test_served_by_our_class_with_yarn(server):
    factor = THINKING_2601["rope_scaling"]["factor"]
    assert f"LongcatFlashForCausalLM served by longcat_sglang (rope yarn x{factor:g}," in server.log()


def test_yarn_matches_oracle_past_original_context(server, yarn_ckpt, plain_rope_twin, long_prompt_ids):
    served = server.prompt_logprobs(long_prompt_ids)
    diff, yarn_effect = oracle.yarn_gaps(served, yarn_ckpt, plain_rope_twin, long_prompt_ids, ORIGINAL_CONTEXT)
    assert diff <= 1e-3
    assert yarn_effect > 100 * 1e-3
