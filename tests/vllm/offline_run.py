"""Runs vLLM's offline ``LLM`` API once and writes what the parity tests compare, as JSON.

Usage: python offline_run.py SPEC.json OUT.json, SPEC = {"model", "dtype", "enforce_eager", "tp",
"ep", "prompts": [[token ids]], "max_tokens"} and optionally "speculative" (vLLM's speculative_config)
and "capture_draft" (TP=1 only: the engine runs in this process and every forward of our MTP draft
is saved as {"input_ids", "positions", "logits"} in OUT.json's sibling draft_calls.pt, prompt by
prompt). A subprocess per engine configuration keeps every engine's workers and memory out of the
test process.
"""

import json
import os
import sys


def _capture_draft_calls(calls: list) -> None:
    """Wraps our draft's forward to record its inputs and the logits of every row it computes."""
    from longcat_vllm.mtp import LongcatFlashMTP

    forward = LongcatFlashMTP.forward

    def recording(self, input_ids, positions, hidden_states, *args, **kwargs):
        out = forward(self, input_ids, positions, hidden_states, *args, **kwargs)
        calls[-1].append({"input_ids": input_ids.tolist(), "positions": positions.tolist(),
                          "logits": self.compute_logits(out).float().cpu()})
        return out
    LongcatFlashMTP.forward = recording


def _spec_metrics(llm) -> dict:
    """vLLM's speculative-decoding counters (drafted and accepted draft tokens, all requests)."""
    names = {"vllm:spec_decode_num_draft_tokens": "drafted", "vllm:spec_decode_num_accepted_tokens": "accepted"}
    return {names[m.name]: int(m.value) for m in llm.get_metrics() if m.name in names}


def main(spec_path: str, out_path: str) -> None:
    spec = json.loads(open(spec_path).read())
    tp = spec.get("tp", 1)
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "|".join(str(i) for i in range(tp)))
    calls: list[list] = []
    if spec.get("capture_draft"):
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the draft runs in this process
        _capture_draft_calls(calls)
    from vllm import LLM, SamplingParams

    speculative = spec.get("speculative")
    llm = LLM(spec["model"], dtype=spec["dtype"], enforce_eager=spec["enforce_eager"], tensor_parallel_size=tp,
              enable_expert_parallel=spec.get("ep", False), max_model_len=512, max_num_seqs=16,
              kv_cache_memory_bytes=1 << 28, seed=0, speculative_config=speculative,
              disable_log_stats=speculative is None, enable_prefix_caching=speculative is None)
    params = SamplingParams(max_tokens=spec["max_tokens"], temperature=0.0, prompt_logprobs=0, detokenize=False,
                            ignore_eos=True)
    inputs = [{"prompt_token_ids": p} for p in spec["prompts"]]
    if spec.get("capture_draft"):  # one prompt at a time, so each draft forward belongs to one prompt
        outs = []
        for item in inputs:
            calls.append([])
            outs += llm.generate([item], params, use_tqdm=False)
    else:
        outs = llm.generate(inputs, params, use_tqdm=False)
    result = {
        "prompt_logprobs": [[None] + [d[t].logprob for d, t in zip(o.prompt_logprobs[1:], p[1:])]
                            for o, p in zip(outs, spec["prompts"])],
        "greedy": [list(o.outputs[0].token_ids) for o in outs],
    }
    if speculative is not None:
        result["spec"] = _spec_metrics(llm)
    if calls:
        import torch
        torch.save(calls, os.path.join(os.path.dirname(out_path), "draft_calls.pt"))
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(*sys.argv[1:3])
