"""Decode tokens/s in vLLM + the plugin with and without MTP speculative decoding, good-draft preset.

Draft preset checkpoint (random weights wired so the MTP draft agrees with the target ~90%, see
longcat_common.testing.draft), bf16, 16-token prompts, 64 new tokens (EOS ignored), batch 1 and 8, greedy;
median of 3 timed runs after a warm-up. One engine per configuration (no MTP; MTP with 1 and 2 draft
tokens), each in its own process, one after the other on the same 2 CPU cores
(VLLM_CPU_OMP_THREADS_BIND=0-1). Acceptance: vLLM's accepted / drafted draft-token counters over the runs.

Run: $(scripts/venv.sh vllm)/bin/python benchmarks/mtp_throughput.py [--eager]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from timing import median_seconds
from workload import NEW_TOKENS, PROMPT_LEN, prompts

BATCHES, REPEATS = (1, 8), 3
DRAFT_TOKENS = (0, 1, 2)  # 0: no MTP


def measure(ckpt: str, draft_tokens: int, eager: bool) -> dict:
    """{"rates": {batch: tok/s}, "acceptance": accepted / drafted or None} for one engine configuration."""
    from vllm import LLM, SamplingParams

    speculative = {"method": "mtp", "num_speculative_tokens": draft_tokens} if draft_tokens else None
    llm = LLM(ckpt, dtype="bfloat16", enforce_eager=eager, max_model_len=256, max_num_seqs=16,
              kv_cache_memory_bytes=1 << 29, seed=0, speculative_config=speculative, disable_log_stats=False)
    params = SamplingParams(max_tokens=NEW_TOKENS, temperature=0.0, ignore_eos=True, detokenize=False)
    rates = {}
    for batch in BATCHES:
        inputs = [{"prompt_token_ids": p} for p in prompts(batch)]
        rates[batch] = batch * NEW_TOKENS / median_seconds(lambda: llm.generate(inputs, params, use_tqdm=False), REPEATS)
    names = ("vllm:spec_decode_num_draft_tokens", "vllm:spec_decode_num_accepted_tokens")
    counters = {m.name: m.value for m in llm.get_metrics() if m.name in names}
    drafted, accepted = (counters.get(name, 0) for name in names)
    return {"rates": rates, "acceptance": accepted / drafted if drafted else None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--eager", action="store_true", help="vLLM with enforce_eager (no torch.compile)")
    parser.add_argument("--one", nargs=2, metavar=("CKPT", "DRAFT_TOKENS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0-1")
    if args.one:
        print("RESULT " + json.dumps(measure(args.one[0], int(args.one[1]), args.eager)))
        return
    from longcat_common.testing.tiny import write_checkpoint

    ckpt = str(write_checkpoint(Path(tempfile.mkdtemp(prefix="longcat-bench-")), preset="draft"))
    results = {}
    for k in DRAFT_TOKENS:
        cmd = [sys.executable, __file__, "--one", ckpt, str(k)] + (["--eager"] if args.eager else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"benchmark with {k} draft tokens failed:\n{proc.stderr[-3000:]}")
        results[k] = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    print(f"\ndecode tokens/s, draft preset, bf16, {PROMPT_LEN}-token prompts, {NEW_TOKENS} new tokens, "
          f"median of {REPEATS}{', eager' if args.eager else ''}")
    print(f"{'MTP draft tokens':>16} | {'acceptance':>10} | " + " | ".join(f"{'batch ' + str(b):>14}" for b in BATCHES))
    base = results[0]["rates"]
    for k, r in results.items():
        acc = f"{r['acceptance']:.2f}" if r["acceptance"] is not None else "-"
        cells = [f"{r['rates'][str(b)]:6.1f} ({r['rates'][str(b)] / base[str(b)]:.2f}x)" for b in BATCHES]
        print(f"{k if k else 'off':>16} | {acc:>10} | " + " | ".join(f"{c:>14}" for c in cells))


if __name__ == "__main__":
    main()
