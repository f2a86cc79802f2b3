"""LongCat-Flash-Thinking-2601's config shape (``LongcatCausalLM``, no model_type, YaRN) served by our class,
matching the transformers oracle (which implements the same YaRN and mscale) past the original context.

The YaRN frequencies and the softmax mscale^2 enter on the CPU through longcat_common.rope and vLLM's
own DeepseekV2MLAAttention scaling; a plain-RoPE model of the same weights is far off at those positions,
so the test sees YaRN.
"""

from tests import oracle
from tests.conftest import THINKING_2601

ORIGINAL_CONTEXT = THINKING_2601["rope_scaling"]["original_max_position_embeddings"]


def test_longcat_causal_lm_with_yarn_matches_oracle_past_original_context(offline_engine, yarn_ckpt,
                                                                           long_prompt_ids, plain_rope_twin):
    result, log = offline_engine({"model": str(yarn_ckpt), "dtype": "float32", "prompts": [long_prompt_ids],
                                  "max_tokens": 4})
    assert result is not None, log[-4000:]
    assert "LongcatCausalLM served by longcat_vllm" in log
    served = result["prompt_logprobs"][0]
    diff, yarn_effect = oracle.yarn_gaps(served, yarn_ckpt, plain_rope_twin, long_prompt_ids, ORIGINAL_CONTEXT)
    assert diff <= 1e-3
    assert yarn_effect > 100 * 1e-3
