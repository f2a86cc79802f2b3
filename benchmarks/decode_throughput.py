"""End-to-end decode tokens/s: the plugin in vLLM against transformers' ``generate``, same checkpoint.

Bench preset checkpoint (about 0.3B parameters, random weights), bf16, 16-token prompts, 64 new tokens
(EOS ignored), batch 1 and 16, greedy; median of several timed runs after a warm-up, both on the
same 2 CPU cores (vLLM: VLLM_CPU_OMP_THREADS_BIND=0-1, default compile settings; transformers: 2
threads, its cache-enabled generate on the oracle model, see tests/oracle.py).

Run: $(scripts/venv.sh vllm)/bin/python benchmarks/decode_throughput.py [--eager]
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from timing import median_seconds  # noqa: E402

PROMPT_LEN, NEW_TOKENS, BATCHES, REPEATS = 16, 64, (1, 16), 3


def prompts(batch: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(batch)
    return [[1] + torch.randint(10, 900, (PROMPT_LEN - 1,), generator=gen).tolist() for _ in range(batch)]


def vllm_rates(ckpt: Path, eager: bool) -> dict[int, float]:
    from vllm import LLM, SamplingParams

    llm = LLM(str(ckpt), dtype="bfloat16", enforce_eager=eager, max_model_len=256, max_num_seqs=16,
              kv_cache_memory_bytes=1 << 29, seed=0)
    params = SamplingParams(max_tokens=NEW_TOKENS, temperature=0.0, ignore_eos=True, detokenize=False)
    rates = {}
    for batch in BATCHES:
        inputs = [{"prompt_token_ids": p} for p in prompts(batch)]
        rates[batch] = batch * NEW_TOKENS / median_seconds(lambda: llm.generate(inputs, params, use_tqdm=False), REPEATS)
    del llm
    return rates


def transformers_rates(ckpt: Path) -> dict[int, float]:
    from tests.oracle import load_oracle

    torch.set_num_threads(2)
    model = load_oracle(ckpt, torch.bfloat16)
    rates = {}
    for batch in BATCHES:
        ids = torch.tensor(prompts(batch))
        run = lambda: model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,  # noqa: E731
                                     min_new_tokens=NEW_TOKENS, do_sample=False)
        with torch.inference_mode():
            rates[batch] = batch * NEW_TOKENS / median_seconds(run, REPEATS)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--eager", action="store_true", help="vLLM with enforce_eager (no torch.compile)")
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0-1")
    from longcat_common.tiny import write_checkpoint

    ckpt = write_checkpoint(Path(tempfile.mkdtemp(prefix="longcat-bench-")), preset="bench")
    ours = vllm_rates(ckpt, args.eager)
    theirs = transformers_rates(ckpt)
    print(f"\ndecode tokens/s, bench preset, bf16, {PROMPT_LEN}-token prompts, {NEW_TOKENS} new tokens, "
          f"median of {REPEATS}")
    print(f"{'batch':>5} | {'vLLM + plugin':>13} | {'transformers':>12} | {'ratio':>6}")
    for batch in BATCHES:
        print(f"{batch:>5} | {ours[batch]:>13.1f} | {theirs[batch]:>12.1f} | {ours[batch] / theirs[batch]:>5.2f}x")


if __name__ == "__main__":
    main()
