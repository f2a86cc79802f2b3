"""End-to-end decode tokens/s: the plugin in vLLM against vLLM's own built-in LongCat class (and, with
--transformers, transformers' ``generate``), same checkpoint, runs alternated.

Bench preset checkpoint (about 0.3B parameters, random weights), bf16, 16-token prompts, 64 new tokens
(EOS ignored), batch 1 and 16, greedy. Each contender lives in its own process, built once; every
round times one run of each in turn (after one warm-up run each), so all see the same machine
load; the figures are medians over the rounds. All on the same 2 CPU cores (vLLM:
VLLM_CPU_OMP_THREADS_BIND=0-1, engine core in the worker's process (VLLM_ENABLE_V1_MULTIPROCESSING=0)
for both vLLM contenders, default compile settings unless --eager; transformers: 2 threads, its
cache-enabled generate on the oracle model, see tests/oracle.py).

vLLM 0.32's built-in class cannot run on the CPU backend as shipped: ``builtin_on_cpu.py`` swaps three
engine functions for torch ones in that process only (what and why is in its docstring). Its greedy
tokens are compared with the plugin's and the agreement printed (bf16: near-ties may differ).

Run: $(scripts/venv.sh vllm)/bin/python benchmarks/decode_throughput.py [--eager] [--repeats N] [--transformers]
"""

import argparse
import os
import statistics
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from alternated import time_alternated
from workload import NEW_TOKENS, PROMPT_LEN, prompts

ROOT = Path(__file__).resolve().parents[1]
BATCHES = (1, 16)


def vllm_runner(ckpt: str, eager: bool, builtin: bool):
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the patch below must reach the model's process
    if builtin:
        os.environ["VLLM_PLUGINS"] = "none"  # no longcat_flash plugin: vLLM's own class serves
        from builtin_on_cpu import patch_builtin_for_cpu

        patch_builtin_for_cpu()
    from vllm import LLM, SamplingParams

    llm = LLM(ckpt, dtype="bfloat16", enforce_eager=eager, max_model_len=256, max_num_seqs=16,
              kv_cache_memory_bytes=1 << 29, seed=0)
    params = SamplingParams(max_tokens=NEW_TOKENS, temperature=0.0, ignore_eos=True, detokenize=False)

    def run(batch: int) -> list[list[int]]:
        outs = llm.generate([{"prompt_token_ids": p} for p in prompts(batch)], params, use_tqdm=False)
        return [list(o.outputs[0].token_ids) for o in outs]
    return run


def transformers_runner(ckpt: str):
    sys.path.insert(0, str(ROOT))  # tests.oracle; this process never imports longcat_vllm
    from tests.oracle import load_oracle

    torch.set_num_threads(2)
    model = load_oracle(ckpt, torch.bfloat16)

    @torch.inference_mode()
    def run(batch: int) -> list[list[int]]:
        ids = torch.tensor(prompts(batch))
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
                             min_new_tokens=NEW_TOKENS, do_sample=False)
        return out[:, PROMPT_LEN:].tolist()
    return run


@contextmanager
def build(name: str, ckpt: str, eager: bool):
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0-1")
    yield transformers_runner(ckpt) if name == "transformers" else vllm_runner(ckpt, eager, name == "built-in")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--eager", action="store_true", help="vLLM with enforce_eager (no torch.compile)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median reported)")
    parser.add_argument("--transformers", action="store_true", help="also time transformers' generate")
    args = parser.parse_args()
    contenders = ("plugin", "built-in") + (("transformers",) if args.transformers else ())
    from longcat_common.testing.tiny import write_checkpoint

    load_before = os.getloadavg()[0]
    ckpt = str(write_checkpoint(Path(tempfile.mkdtemp(prefix="longcat-bench-")), preset="bench"))
    seconds, tokens = time_alternated(build, contenders, (ckpt, args.eager), BATCHES, args.repeats)
    rate = {key: int(key[1]) * NEW_TOKENS / statistics.median(runs) for key, runs in seconds.items()}
    print(f"\ndecode tokens/s, bench preset, bf16, {PROMPT_LEN}-token prompts, {NEW_TOKENS} new tokens, "
          f"vLLM {'eager' if args.eager else 'compiled'}, median of {args.repeats} alternated rounds, "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"{'batch':>5} | {'plugin':>7} | {'built-in':>8} | {'ratio':>6} | built-in greedy = plugin"
          + (f" | {'transformers':>12} | {'ratio':>6}" if args.transformers else ""))
    for b in BATCHES:
        same = sum(x == y for x, y in zip(tokens["plugin", b], tokens["built-in", b]))
        line = (f"{b:>5} | {rate['plugin', b]:>7.1f} | {rate['built-in', b]:>8.1f} | "
                f"{rate['plugin', b] / rate['built-in', b]:>5.2f}x | {same:>3}/{b} sequences")
        if args.transformers:
            line += f" | {rate['transformers', b]:>12.1f} | {rate['plugin', b] / rate['transformers', b]:>5.2f}x"
        print(line)


if __name__ == "__main__":
    main()
