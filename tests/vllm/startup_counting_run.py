"""One vLLM engine in this process (V1 multiprocessing off), started with a GPU-style start-up played on
the CPU, for test_startup_counting.py; writes what it observed as JSON.

Usage: python startup_counting_run.py MODEL OUT.json

vLLM's FULL-CUDA-graph warm-up runs ``_dummy_run(n, force_attention=True)`` in graph mode NONE inside
``compile_or_warm_up_model`` (gpu_model_runner.py ``_warmup_and_capture``): a start-up forward with
attention metadata and every row padding. The CPU worker has no such step, so this script adds it to
the CPU worker's ``compile_or_warm_up_model`` before the engine starts (the plugin wraps that method
when the model is built, so the step runs inside start-up as on a GPU). Every start-up dummy run
records whether our publishing thread exists. Then: the counts right after start-up, after a
data-parallel idle rank's dummy batch (``execute_dummy_batch``), and after one request.
"""

import json
import os
import sys
import threading

os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0")
FULL_WARMUP_TOKENS = 7


def main(model: str, out_path: str) -> None:
    from vllm import LLM, SamplingParams
    from vllm.v1.worker.cpu_worker import CPUWorker
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    startup_runs = []
    dummy_run, warm_up = GPUModelRunner._dummy_run, CPUWorker.compile_or_warm_up_model

    def recording_dummy_run(self, *args, **kwargs):
        startup_runs.append(any(t.name == "longcat-metrics" for t in threading.enumerate()))
        return dummy_run(self, *args, **kwargs)

    def gpu_style_warm_up(self):
        out = warm_up(self)
        self.model_runner._dummy_run(FULL_WARMUP_TOKENS, force_attention=True)
        return out

    GPUModelRunner._dummy_run = recording_dummy_run
    CPUWorker.compile_or_warm_up_model = gpu_style_warm_up
    llm = LLM(model, dtype="float32", enforce_eager=True, max_model_len=512, max_num_seqs=16,
              kv_cache_memory_bytes=1 << 28, seed=0, enable_prefix_caching=False)
    from longcat_vllm import metrics

    GPUModelRunner._dummy_run = dummy_run
    result = {"startup_runs_with_publisher": startup_runs, "after_startup": metrics._counter.totals(),
              "publisher_alive": metrics._counter.flusher is not None and metrics._counter.flusher.is_alive()}
    llm.collective_rpc("execute_dummy_batch")
    result["after_dummy_batch"] = metrics._counter.totals()
    prompt = [1, 17, 200, 45, 99, 300, 12, 7, 650, 88, 23, 400, 5]
    out = llm.generate([{"prompt_token_ids": prompt}], SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True),
                       use_tqdm=False)
    result["forwarded"] = prompt + list(out[0].outputs[0].token_ids[:-1])
    result["after_request"] = metrics._counter.totals()
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(*sys.argv[1:3])
