"""Runs vLLM's offline ``LLM`` API once and writes what the parity tests compare, as JSON.

Usage: python offline_run.py SPEC.json OUT.json, SPEC = {"model", "dtype", "enforce_eager", "tp",
"ep", "ep_weight_filter", "prompts": [[token ids]], "max_tokens"}. A subprocess per engine configuration
keeps every engine's workers and memory out of the test process.
"""

import json
import os
import sys


def main(spec_path: str, out_path: str) -> None:
    from vllm import LLM, SamplingParams

    spec = json.loads(open(spec_path).read())
    tp = spec.get("tp", 1)
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "|".join(str(i) for i in range(tp)))
    llm = LLM(spec["model"], dtype=spec["dtype"], enforce_eager=spec["enforce_eager"], tensor_parallel_size=tp,
              enable_expert_parallel=spec.get("ep", False),
              enable_ep_weight_filter=spec.get("ep_weight_filter", False), max_model_len=512, max_num_seqs=16,
              kv_cache_memory_bytes=1 << 28, seed=0)
    params = SamplingParams(max_tokens=spec["max_tokens"], temperature=0.0, prompt_logprobs=0, detokenize=False)
    outs = llm.generate([{"prompt_token_ids": p} for p in spec["prompts"]], params)
    result = {
        "prompt_logprobs": [[None] + [d[t].logprob for d, t in zip(o.prompt_logprobs[1:], p[1:])]
                            for o, p in zip(outs, spec["prompts"])],
        "greedy": [list(o.outputs[0].token_ids) for o in outs],
    }
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(*sys.argv[1:3])
