"""A model server subprocess on loopback for the engine tests: start, wait until healthy, always stop."""

import os
import signal
import socket
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(cmd: list[str], port: int, log_path: Path, health: str = "/health", timeout: float = 600,
                   env: dict | None = None):
    """Yields the base URL once GET ``health`` answers 200; the log file collects stdout and stderr."""
    with running_servers([(cmd, port, log_path, env)], health, timeout) as (base,):
        yield base


@contextmanager
def running_servers(servers: list[tuple[list[str], int | None, Path, dict | None]], health: str = "/health",
                    timeout: float = 600):
    """Starts every server at once, (cmd, port, log path, extra env) each, and yields their base URLs once
    each answers GET ``health`` with 200; stops them all on exit. A port of None is a process without an
    HTTP endpoint (a headless rank): it only has to stay alive; its URL is None."""
    procs = []
    try:
        for cmd, _, log_path, env in servers:
            with open(log_path, "w") as log:
                procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                              env={**os.environ, **(env or {})}))
        bases = [None if port is None else f"http://127.0.0.1:{port}" for _, port, _, _ in servers]
        deadline = time.time() + timeout
        waiting = {i for i, base in enumerate(bases) if base}
        while waiting:
            for i, proc in enumerate(procs):
                if proc.poll() is not None:
                    log_path = servers[i][2]
                    raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
            for i in list(waiting):
                try:
                    with urllib.request.urlopen(bases[i] + health, timeout=5) as r:
                        if r.status == 200:
                            waiting.discard(i)
                except OSError:
                    pass
            if time.time() > deadline:
                logs = "\n".join(servers[i][2].read_text()[-4000:] for i in waiting)
                raise TimeoutError(f"server not healthy after {timeout}s:\n{logs}")
            if waiting:
                time.sleep(2)
        yield bases
    finally:
        for proc in procs:
            stop_group(proc)


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server's whole process group (engine and worker processes too), SIGKILL after 30 s."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
