"""Serve LongCat-Flash with SGLang; with longcat-flash-plugins installed, our class serves it.

    python examples/sglang_serve.py [MODEL] [--port PORT] [any sglang.launch_server argument ...]

On a GPU node, e.g.:
    python examples/sglang_serve.py meituan-longcat/LongCat-Flash-Chat-FP8 --port 30000 --tp 8 --enable-ep-moe
(``--enable-ep-moe`` is the plugin's alias for SGLang 0.5.23's ``--ep-size <tp>``.)

Without a GPU this adds SGLang's CPU settings (``--device cpu --attention-backend torch_native
--disable-cuda-graph``) and binds one core per TP rank (SGLANG_CPU_OMP_THREADS_BIND). Without MODEL it
first writes the tiny random test checkpoint (``python -m longcat_common.testing.tiny``) and serves that.
The server log says ``LongcatFlashForCausalLM served by longcat_sglang`` once per rank.
Then: python examples/sglang_client.py http://127.0.0.1:PORT
"""

import os
import sys
import tempfile
from pathlib import Path

import torch

CPU_ARGS = ["--device", "cpu", "--attention-backend", "torch_native", "--disable-cuda-graph",
            "--max-total-tokens", "8192"]


def main(argv: list[str]) -> None:
    if argv and not argv[0].startswith("--"):
        model, args = argv[0], argv[1:]
    else:
        from longcat_common.testing.tiny import write_checkpoint

        model, args = str(write_checkpoint(Path(tempfile.mkdtemp(prefix="longcat-tiny-")))), argv
        print(f"serving the tiny random checkpoint {model}", flush=True)
    env = dict(os.environ)
    if not torch.cuda.is_available():
        args = CPU_ARGS + args
        tp = int(args[args.index("--tp") + 1]) if "--tp" in args else 1
        cores = os.cpu_count() or 1
        env.setdefault("SGLANG_CPU_OMP_THREADS_BIND", "|".join(str(rank % cores) for rank in range(tp)))
    if "--port" not in args:
        args += ["--port", "30000"]
    cmd = [sys.executable, "-m", "sglang.launch_server", "--model-path", model, "--host", "127.0.0.1", *args]
    print(" ".join(cmd), flush=True)
    os.execvpe(cmd[0], cmd, env)


if __name__ == "__main__":
    main(sys.argv[1:])
