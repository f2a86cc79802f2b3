"""A real SGLang server (``python -m sglang.launch_server``) on loopback, on this machine's CPU.

Built on tests/server.py (own process group, always killed as a group: SGLang forks a scheduler per
TP rank and a detokenizer).
"""

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests

from longcat_sglang.model import ACTIVE_MESSAGE
from tests.server import free_port, running_servers

CPU_ARGS = ["--device", "cpu", "--attention-backend", "torch_native", "--disable-cuda-graph",
            "--max-total-tokens", "8192", "--max-running-requests", "32"]
START_TIMEOUT = 400
# for servers that stay up beside others: an idle SGLang scheduler otherwise spins a core at 100% (its event
# loop polls without waiting), taking it from the other servers and from the test's own reference forwards
SLEEP_ON_IDLE = ["--sleep-on-idle"]


EXAMPLE_LAUNCHER = Path(__file__).parents[2] / "examples" / "sglang_serve.py"


def _command(model: Path, port: int, args, launcher: Path | None = None) -> list[str]:
    if launcher:  # a launch script taking MODEL and sglang.launch_server arguments (adds the CPU ones)
        return [sys.executable, str(launcher), str(model), "--port", str(port), *args]
    return [sys.executable, "-m", "sglang.launch_server", "--model-path", str(model), "--host", "127.0.0.1",
            "--port", str(port), *CPU_ARGS, *args]


def _flag(args, name: str, default: int) -> int:
    args = list(args)
    return int(args[args.index(name) + 1]) if name in args else default


def _env(args) -> dict:
    """One core per TP rank (with ``--nnodes``, per rank of this node, the nodes' ranks on different cores).
    SGLang needs them named when there are fewer NUMA nodes than ranks; and with its default (every core
    to one rank) the OpenMP threads of a tiny model spin against the server's other processes: a decode
    step takes ~0.4 s instead of ~8 ms on this 2-core machine."""
    local = _flag(args, "--tp", 1) // _flag(args, "--nnodes", 1)
    first = _flag(args, "--node-rank", 0) * local
    cores = (str(rank % (os.cpu_count() or 1)) for rank in range(first, first + local))
    return {"SGLANG_CPU_OMP_THREADS_BIND": "|".join(cores)}


class Server:
    def __init__(self, url: str, log_path: Path):
        self.url, self.log_paths = url, [log_path]

    def log(self) -> str:
        """The server's log; every node's, one after the other, for a multi-node server."""
        return "".join(path.read_text(errors="replace") for path in self.log_paths)

    def generate(self, input_ids: list[int], max_new_tokens: int = 1, logprob_start_len: int = 0,
                 ignore_eos: bool = False) -> dict:
        """Greedy ``/generate`` with the log-prob of the prompt tokens from ``logprob_start_len`` on
        (SGLang recomputes, rather than reads from its prefix cache, the tokens it must score)."""
        body = {"input_ids": input_ids, "return_logprob": True, "logprob_start_len": logprob_start_len,
                "sampling_params": {"max_new_tokens": max_new_tokens, "temperature": 0.0, "ignore_eos": ignore_eos}}
        r = requests.post(f"{self.url}/generate", json=body, timeout=300)
        r.raise_for_status()
        return r.json()

    def new_ids(self, input_ids: list[int], max_new_tokens: int) -> list[int]:
        """Greedy new token ids, EOS ignored, every prompt token computed (none from the prefix cache)."""
        out = self.generate(input_ids, max_new_tokens, ignore_eos=True)["meta_info"]["output_token_logprobs"]
        return [token for _lp, token, _text in out]

    def prompt_logprobs(self, input_ids: list[int]) -> list[float | None]:
        """Teacher-forced log-prob of every prompt token given its prefix (None at position 0)."""
        return [lp for lp, _token, _text in self.generate(input_ids)["meta_info"]["input_token_logprobs"]]


@contextmanager
def any_model_server(model: Path, log: Path, args=(), launcher: Path | None = None, env: dict | None = None):
    """A ready server of any model; ``env`` adds to the server's environment."""
    with any_model_servers([(model, log, args, env)], launcher) as (server,):
        yield server


@contextmanager
def any_model_servers(servers: list[tuple[Path, Path, list, dict | None]], launcher: Path | None = None):
    """Ready servers of any model, started at once: (model, log, args, extra env) each."""
    specs = []
    for model, log, args, env in servers:
        port = free_port()
        specs.append((_command(model, port, args, launcher), port, log, {**_env(args), **(env or {})}))
    with running_servers(specs, health="/health_generate", timeout=START_TIMEOUT) as urls:
        yield [Server(url, log) for url, (_, _, log, _) in zip(urls, specs)]


@contextmanager
def sglang_server(model: Path, log: Path, args=(), launcher: Path | None = None):
    """A ready server; fails if it does not log that longcat_sglang's class serves the model."""
    with any_model_server(model, log, args, launcher) as server:
        assert ACTIVE_MESSAGE in server.log(), "SGLang did not build longcat_sglang's LongcatFlashForCausalLM"
        yield server


@contextmanager
def two_node_server(model: Path, log_dir: Path, args=()):
    """``--nnodes 2`` on loopback, one process per "node" (``--tp`` ranks split over them, one core each),
    started at once; node 0's URL is served (node 1 serves no HTTP, but on one host it needs a port of its
    own). Fails unless both logs say longcat_sglang's class serves."""
    common = [*args, "--nnodes", "2", "--dist-init-addr", f"127.0.0.1:{free_port()}"]
    nodes = []
    for rank in (0, 1):
        node_args, port = [*common, "--node-rank", str(rank)], free_port()
        nodes.append((_command(model, port, node_args), port if rank == 0 else None, log_dir / f"node{rank}.log",
                      _env(node_args)))
    with running_servers(nodes, health="/health_generate", timeout=START_TIMEOUT) as (url, _):
        server = Server(url, nodes[0][2])
        server.log_paths.append(nodes[1][2])
        for node in nodes:
            assert ACTIVE_MESSAGE in node[2].read_text(errors="replace"), f"{node[2].name}: not our class"
        yield server


def launch_expecting_failure(model: Path, log: Path, args=()) -> tuple[int | None, str]:
    """Starts a server that must fail while loading; returns (exit code, log). The exit code is None
    if it came up instead (it is then stopped)."""
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen(_command(model, port, args), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(2)
    finally:
        code = proc.poll()
        _kill_group(proc)
    return code, log.read_text(errors="replace")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
