"""vLLM session helpers: one engine subprocess per configuration, shared by the tests that read it."""

import json
import os
import queue
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

HERE = Path(__file__).parent
SERVED_BY_US = "LongcatFlashForCausalLM served by longcat_vllm"
DRAFT_SERVED_BY_US = "LongCatFlashMTPModel served by longcat_vllm"
PROMPTS = [  # token ids of the tiny tokenizer's vocabulary, bos first
    [1, 17, 200, 45, 99, 300, 12, 7, 650, 88, 23, 400],
    [1, 5, 9, 33, 77, 100, 4, 8],
    [1, 301, 302, 303, 304, 305, 306, 307, 308, 309, 310, 311, 312, 313, 314, 315, 316, 317],
]
MAX_TOKENS = 8


def run_offline(spec: dict, tmp_path: Path, timeout: int = 600, cores: list[int] | None = None,
                in_process: bool = False) -> tuple[dict | None, str]:
    """Runs offline_run.py (or ``spec["script"]``) on ``spec``; returns (its JSON result or None if it failed,
    its whole log).
    ``cores``: the CPU cores its ranks are bound to (default: 0 .. tp-1).
    ``in_process``: the engine core runs in the script's process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``), not
    in a process of its own as by default: the same model and outputs, half the start-up (one vLLM import,
    not two: 25 s instead of 54 s for a TP=1 eager engine here); TP ranks still get their worker processes.

    With ``capture_draft`` the result also holds "draft_calls": per prompt, the draft forwards' inputs
    and logits (offline_run.py)."""
    spec_file, out_file = tmp_path / "spec.json", tmp_path / "out.json"
    spec = {"prompts": PROMPTS, "max_tokens": MAX_TOKENS, "enforce_eager": True, "dtype": "bfloat16", **spec}
    script = HERE / spec.pop("script", "offline_run.py")
    spec_file.write_text(json.dumps(spec))
    env = {**os.environ, "VLLM_LOGGING_LEVEL": "INFO"}
    if cores is not None:
        env["VLLM_CPU_OMP_THREADS_BIND"] = "|".join(map(str, cores))
    if in_process:
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    proc = subprocess.run([sys.executable, str(script), str(spec_file), str(out_file)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    log = proc.stdout + proc.stderr
    if proc.returncode:
        return None, log
    result = json.loads(out_file.read_text())
    if (tmp_path / "draft_calls.pt").exists():
        import torch
        result["draft_calls"] = torch.load(tmp_path / "draft_calls.pt")
    return result, log


class OfflineEngines:
    """One offline_run.py per spec and session, its engine core in process (``run_offline``). ``prefetch``
    starts a module's specs ahead, as many at once as there are free cores (a TP=1 engine runs on one core,
    so on this 2-core machine two overlap); calling with a spec waits for its run (starting it if it was
    not prefetched)."""

    def __init__(self, tmp_path_factory):
        self.tmp_path_factory = tmp_path_factory
        self.runs: dict[str, Future] = {}
        self.free_cores: queue.Queue[int] = queue.Queue()
        for core in range(os.cpu_count() or 1):
            self.free_cores.put(core)
        self.taking = threading.Lock()  # one run takes its cores at a time: two TP=2 runs cannot deadlock
        self.pool = ThreadPoolExecutor(os.cpu_count() or 1)

    def _run(self, spec: dict, tmp_path: Path) -> tuple[dict | None, str]:
        with self.taking:
            cores = [self.free_cores.get() for _ in range(min(spec.get("tp", 1), os.cpu_count() or 1))]
        try:
            return run_offline(spec, tmp_path, cores=cores, in_process=True)
        finally:
            for core in cores:
                self.free_cores.put(core)

    def prefetch(self, specs) -> None:
        for spec in specs:
            key = json.dumps(spec, sort_keys=True)
            if key not in self.runs:
                self.runs[key] = self.pool.submit(self._run, spec, self.tmp_path_factory.mktemp("vllm"))

    def __call__(self, spec: dict) -> tuple[dict | None, str]:
        self.prefetch([spec])
        return self.runs[json.dumps(spec, sort_keys=True)].result()


@pytest.fixture(scope="session")
def offline_engine(tmp_path_factory):
    engines = OfflineEngines(tmp_path_factory)
    yield engines
    engines.pool.shutdown(cancel_futures=True)


def plugins_off_env() -> dict:
    """``VLLM_PLUGINS`` naming every installed vLLM plugin but ours (vLLM's own LoRA resolvers, ...): vLLM
    as it runs without this package. (An empty value would also load none of vLLM's own.)"""
    from importlib.metadata import entry_points

    groups = ("vllm.general_plugins", "vllm.platform_plugins", "vllm.stat_logger_plugins", "vllm.io_processor_plugins")
    others = sorted({e.name for g in groups for e in entry_points(group=g) if not e.value.startswith("longcat_")})
    return {"VLLM_PLUGINS": ",".join(others)}
