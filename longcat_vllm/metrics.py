"""Zero-expert metrics on vLLM's /metrics (docs/metrics.md).

vLLM runs the model in worker processes and serves /metrics from the API server process. So the worker
side (``count_routing``, called from our router inside FusedMoE's custom op) keeps a device-side
``SlotCounter`` and a thread writes its totals to ``$LONGCAT_METRICS_DIR/<pid>.json``; the API side
registers a Prometheus collector that sums those files at scrape time (``expose``). Both the directory
and the collector come from our start-up check, which vLLM runs in the API server process for our
architectures only, before it starts the engine: every engine and worker process inherits the directory,
and no other model gets either. (Not a ``vllm.stat_logger_plugins`` entry point: vLLM loads those for
every model and, when one exists, turns on stats logging that ``--disable-log-stats`` turned off.)

Each token is counted once: only tensor-parallel rank 0 counts (every TP / EP rank of a data-parallel
rank routes the same tokens, and routing happens before any DP dispatch); each data-parallel rank has
its own TP rank 0 and its own tokens, and the files are summed. (Pipeline parallelism is refused.)
"""

import functools
import json
import logging
import os
import tempfile
from pathlib import Path

import torch
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily
from vllm.config import CUDAGraphMode
from vllm.forward_context import get_forward_context, is_forward_context_available

from longcat_common import metrics
from longcat_common.config import LongcatConfig

DIR_ENV = "LONGCAT_METRICS_DIR"
_counter: metrics.SlotCounter | None = None
_collector: "_Collector | None" = None
logger = logging.getLogger("vllm.longcat_flash_plugins")  # under "vllm" to use its log handler


def rank_counter() -> metrics.SlotCounter | None:
    """The process's counter on the model's device (call while vLLM builds the model), or None where
    this rank does not count."""
    global _counter
    from vllm.distributed import get_tensor_model_parallel_rank

    if DIR_ENV not in os.environ or not metrics.counting_on() or get_tensor_model_parallel_rank() != 0:
        return None
    if _counter is None:
        path = Path(os.environ[DIR_ENV]) / f"{os.getpid()}.json"
        # on the model's device: vLLM builds the model under its target device
        _counter = metrics.SlotCounter(device=None, sink=lambda zero, slots: _write(path, zero, slots))
        _count_after_startup(_counter)
    return _counter


def _count_after_startup(counter: metrics.SlotCounter) -> None:
    """vLLM's worker runs every start-up forward (profile run, compile and warm-up sizes, kernel and JIT
    warm-ups, CUDA-graph capture) inside ``compile_or_warm_up_model``, and a data-parallel rank without
    requests forwards a dummy batch through ``execute_dummy_batch``. Counting (and the publishing thread)
    starts when the first returns and is off during the second: the same worker methods on every device
    (the GPU ``Worker`` and its subclasses, e.g. ``CPUWorker``, which overrides the first), for both of
    vLLM's model runners. Patched in this worker process only, which builds a LongCat model."""
    from vllm.v1.worker.gpu_worker import Worker

    def after_startup(method):
        @functools.wraps(method)
        def wrapped(self, *args, **kwargs):
            out = method(self, *args, **kwargs)
            if counter.flusher is None:
                logger.info(metrics.COUNTING_STARTED)
            counter.start_serving()
            return out
        return wrapped

    def uncounted(method):
        @functools.wraps(method)
        def wrapped(self, *args, **kwargs):
            counter.set_enabled(False)
            try:
                return method(self, *args, **kwargs)
            finally:
                counter.set_enabled(counter.flusher is not None)
        return wrapped

    classes, todo = [], [Worker]
    while todo:
        classes.append(cls := todo.pop())
        todo += cls.__subclasses__()
    for cls in classes:
        for name, wrap in (("compile_or_warm_up_model", after_startup), ("execute_dummy_batch", uncounted)):
            if name in vars(cls):
                setattr(cls, name, wrap(vars(cls)[name]))


def _write(path: Path, zero: int, slots: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"zero_slots": zero, "slots": slots}))
    os.replace(tmp, path)


def count_routing(counter: metrics.SlotCounter, topk_ids: torch.Tensor) -> None:
    """In our router, which runs inside the compiled graph on CPU (and in FusedMoE's op on CUDA): tensor
    ops only, so compiled graphs and CUDA-graph replays count."""
    counter.add(topk_ids, padding_mask())


def padding_mask() -> torch.Tensor | None:
    """The runner's persistent ``is_padding`` buffer (the one vLLM's own routers read) where this forward
    may be padded: vLLM pads only for a CUDA graph and to even out data-parallel ranks. Elsewhere (every
    forward on the CPU backend) None, which saves the mask's three ops."""
    if not is_forward_context_available():
        return None
    context = get_forward_context()
    padded = context.cudagraph_runtime_mode != CUDAGraphMode.NONE or context.dp_metadata is not None
    return context.is_padding if padded else None


def published_counts() -> tuple[int, int]:
    """(zero slots, slots) summed over every counting worker's file."""
    zero = slots = 0
    for f in Path(os.environ[DIR_ENV]).glob("*.json"):
        counts = json.loads(f.read_text())
        zero, slots = zero + counts["zero_slots"], slots + counts["slots"]
    return zero, slots


class _Collector:
    def __init__(self, config: LongcatConfig, model_name: str):
        self.config, self.model_name = config, model_name

    def collect(self):
        zero, slots = published_counts()
        ratio = metrics.zero_ratio(zero, slots)
        values = {metrics.ZERO_SLOTS: zero, metrics.SLOTS: slots, metrics.ZERO_RATIO: ratio,
                  metrics.ACTIVATED: metrics.activated_params_per_token(self.config, ratio)}
        for name, value in values.items():
            family = CounterMetricFamily if name in (metrics.ZERO_SLOTS, metrics.SLOTS) else GaugeMetricFamily
            metric = family(name, metrics.HELP[name], labels=["model_name"])
            metric.add_metric([self.model_name], value)
            yield metric


def expose(vllm_config, config: LongcatConfig) -> None:
    """API server side, once per process: the directory the workers publish to and the collector that
    reads it (off with LONGCAT_METRICS=0)."""
    global _collector
    if not metrics.counting_on() or _collector is not None:
        return
    os.environ.setdefault(DIR_ENV, tempfile.mkdtemp(prefix="longcat-metrics-"))
    _collector = _Collector(config, vllm_config.model_config.served_model_name)
    REGISTRY.register(_collector)
