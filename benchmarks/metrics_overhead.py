"""End-to-end decode tokens/s with and without the zero-expert slot counting (docs/metrics.md).

Two contenders of one engine, same checkpoint, each in its own process: "counting" (the default) and
"off" (``LONGCAT_METRICS=0``: no counter is built, the MoE layers run without the count). Bench preset
checkpoint (4 MoE layers, top-8 over 64 real + 32 zero experts), bf16, 16-token prompts, 64 new tokens
(EOS ignored), greedy, batch 1 and 16, timed in alternated rounds (benchmarks/alternated.py).
Printed, for counting / off: the ratio of their best round times (the least disturbed runs; this
machine's speed drifts by tens of percent within minutes) and the median and range of the per-round
time ratios (each round's two runs follow each other). Also timed, in place: each call of the
per-layer counting ops (``SlotCounter.add``) where the model runs (benchmarks/count_timer.py), set
against the counting contender's best decode step (best round time / new tokens) as
MoE layers x time per call / step. Eager engines only (SGLang on CPU, vLLM with --eager); vLLM's
compiled graph fuses the ops into its router, where they cost less and cannot be timed alone.

  vllm: ``vllm.LLM`` in the contender's process (engine core in-process), 2 cores, compiled by default
        (``--eager`` for enforce_eager); the counts come from the counter file the worker writes.
  sglang: a ``sglang.launch_server`` per contender (CPU flags of the tests, one core, both with
        ``--enable-metrics`` so SGLang's own metrics cost the same), batches sent as one /generate call;
        the counts from its /metrics; the timer reaches its scheduler through benchmarks/inplace.
Each contender prints what it counted when it stops: the counting one must show slots, the other none.

Run: $(scripts/venv.sh vllm)/bin/python benchmarks/metrics_overhead.py vllm [--eager] [--repeats N]
     $(scripts/venv.sh sglang)/bin/python benchmarks/metrics_overhead.py sglang [--repeats N]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from alternated import time_alternated
from count_timer import per_call_seconds
from longcat_common.metrics import FLUSH_INTERVAL
from longcat_common.testing.tiny import PRESETS, write_checkpoint
from workload import NEW_TOKENS, PROMPT_LEN, prompts

ROOT = Path(__file__).resolve().parents[1]
BATCHES = (1, 16)
CONTENDERS = ("counting", "off")
LAYERS = PRESETS["bench"]["num_layers"]  # one MoE per LongCat layer
TIMER_ENV = "LONGCAT_COUNT_TIMER_DIR"  # benchmarks/count_timer.py


@contextmanager
def vllm_contender(ckpt: str, eager: bool):
    from decode_throughput import vllm_runner

    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0-1")
    if eager and TIMER_ENV in os.environ:
        from count_timer import install

        install(os.environ[TIMER_ENV])
    yield vllm_runner(ckpt, eager, builtin=False)
    from longcat_vllm.metrics import published_counts

    time.sleep(2 * FLUSH_INTERVAL)  # the worker's (and the timer's) last publication
    print_counts(*published_counts())


@contextmanager
def sglang_contender(ckpt: str, log: Path):
    import requests

    sys.path.insert(0, str(ROOT))
    from tests.metrics_check import settled_counts
    from tests.sglang.server import sglang_server

    if TIMER_ENV in os.environ:  # the scheduler imports benchmarks/inplace/sitecustomize.py at start-up
        here = Path(__file__).resolve().parent
        os.environ["PYTHONPATH"] = os.pathsep.join([str(here / "inplace"), str(here), os.environ.get("PYTHONPATH", "")])
    with sglang_server(Path(ckpt), log, ["--dtype", "bfloat16", "--enable-metrics"]) as server:
        def run(batch: int) -> list[str]:
            body = {"input_ids": prompts(batch), "sampling_params": {
                "max_new_tokens": NEW_TOKENS, "temperature": 0.0, "ignore_eos": True}}
            r = requests.post(f"{server.url}/generate", json=body, timeout=1200)
            r.raise_for_status()
            return [out["text"] for out in r.json()]
        yield run
        print_counts(*settled_counts(server.url, str(ckpt)))


def print_counts(zero: int, slots: int) -> None:
    label = "off" if os.environ.get("LONGCAT_METRICS") == "0" else "counting"
    if not slots:
        print(f"[{label}] no LongCat counts published", flush=True)
        return
    print(f"[{label}] counted {slots} routed slots, {zero} to zero experts", flush=True)


@contextmanager
def build(name: str, engine: str, ckpt: str, eager: bool, work: str):
    os.environ["LONGCAT_METRICS"] = "1" if name == "counting" else "0"
    if name == "counting":
        os.environ[TIMER_ENV] = str(Path(work) / "timer")
        os.makedirs(os.environ[TIMER_ENV])
    contender = vllm_contender(ckpt, eager) if engine == "vllm" else sglang_contender(ckpt, Path(work) / f"{name}.log")
    with contender as run:
        yield run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("engine", choices=("vllm", "sglang"))
    parser.add_argument("--eager", action="store_true", help="vLLM with enforce_eager (no torch.compile)")
    parser.add_argument("--repeats", type=int, default=9, help="timed rounds (medians reported)")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    work = tempfile.mkdtemp(prefix="longcat-metrics-bench-")
    ckpt = str(write_checkpoint(Path(work) / "ckpt", preset="bench"))
    seconds, tokens = time_alternated(build, CONTENDERS, (args.engine, ckpt, args.eager, work), BATCHES,
                                      args.repeats)
    mode = "" if args.engine == "sglang" else (" eager" if args.eager else " compiled")
    print(f"\n{args.engine}{mode}: decode tokens/s, bench preset, bf16, {PROMPT_LEN}-token prompts, "
          f"{NEW_TOKENS} new tokens, {args.repeats} alternated rounds, load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after")
    print(f"{'batch':>5} | {'best tok/s: off':>15} | {'counting':>8} | {'ratio':>6} | per-round time ratio: "
          f"median (min - max) | same text")
    for b in BATCHES:
        off, on = seconds["off", b], seconds["counting", b]
        ratios = [c / o for c, o in zip(on, off)]
        print(f"{b:>5} | {b * NEW_TOKENS / min(off):>15.1f} | {b * NEW_TOKENS / min(on):>8.1f} | "
              f"{min(on) / min(off):>6.4f} | {statistics.median(ratios):.4f} ({min(ratios):.3f} - {max(ratios):.3f})"
              f"{'':>7} | {tokens['off', b] == tokens['counting', b]}")
    per_call = per_call_seconds(str(Path(work) / "timer"))
    if per_call is None:
        print("counting ops not timed in place (compiled: fused into the router; run with --eager)")
        return
    print(f"counting ops in place: {per_call * 1e6:.1f} us per MoE layer and forward, x {LAYERS} layers = "
          f"{LAYERS * per_call * 1e6:.1f} us per forward; share of the best decode step: " + ", ".join(
              f"batch {b} {LAYERS * per_call / (min(seconds['counting', b]) / NEW_TOKENS):.2%}" for b in BATCHES))


if __name__ == "__main__":
    main()
