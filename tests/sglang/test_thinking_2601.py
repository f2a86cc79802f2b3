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
    want = oracle.prompt_logprobs(oracle.load_oracle(yarn_ckpt), long_prompt_ids)
    plain = oracle.prompt_logprobs(oracle.load_oracle(plain_rope_twin), long_prompt_ids)
    got = server.prompt_logprobs(long_prompt_ids)
    past = range(ORIGINAL_CONTEXT + 1, len(long_prompt_ids))
    diff = max(abs(got[t] - want[t]) for t in past)
    yarn_effect = max(abs(plain[t] - want[t]) for t in past)
    print(f"positions {past.start}-{past.stop - 1}: max |d logprob| vs oracle {diff:.2e}; "
          f"plain RoPE vs YaRN oracle {yarn_effect:.2f}")
    assert diff <= 1e-3
    assert yarn_effect > 100 * 1e-3
