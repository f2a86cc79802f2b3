"""Zero-expert metrics on SGLang's /metrics (``--enable-metrics``; docs/metrics.md).

SGLang's schedulers, which run the model, already publish their metrics through Prometheus
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by the launcher before it starts them; the HTTP
server's /metrics merges every process's files). The counts go the same way: the MoE layers add to one
device-side ``SlotCounter`` per process and a thread moves the totals into prometheus_client metrics.

Each token is counted once: only TP rank 0 counts (every TP / EP rank routes the same tokens).

Two SGLang points, the same on every device (plugin.py registers both hooks; they do nothing in a
process that serves no LongCat model):
  * start-up is over when the scheduler enters ``run_event_loop`` (SGLang's own marker: graph capture
    and warm-ups are done). Capture and its warm-up forwards call the model directly before that, so
    they are not counted, and the publishing thread starts only then (``SlotCounter.start_serving``).
  * every served forward goes through ``ModelRunner.forward``, which sees the batch before a CUDA graph
    pads it: its token count is written to a device scalar (``_step_tokens``) there, and rows past it
    are padding (SGLang's own ``num_token_non_padded`` is set only with EP or DP gathering).
"""

import logging

import torch

from longcat_common import metrics
from longcat_common.config import LongcatConfig

logger = logging.getLogger(__name__)
_counter: metrics.SlotCounter | None = None
_step_tokens: torch.Tensor | None = None  # [] int64 on the model's device: the current forward's real tokens


def rank_counter(config: LongcatConfig) -> metrics.SlotCounter | None:
    """The process's counter (call while SGLang builds the model, under its target device), or None
    where metrics are off or this rank does not count."""
    global _counter, _step_tokens
    from sglang.srt.distributed.parallel_state import get_tensor_model_parallel_rank
    from sglang.srt.runtime_context import get_observability

    if (not get_observability().enable_metrics or not metrics.counting_on()
            or get_tensor_model_parallel_rank() != 0):
        return None
    if _counter is None:
        _counter = metrics.SlotCounter(device=None, sink=_prometheus_sink(config))
        _step_tokens = torch.zeros((), dtype=torch.int64)
    return _counter


def start_serving(*args, **kwargs) -> None:
    """BEFORE hook of ``Scheduler.run_event_loop``."""
    if _counter is not None and _counter.flusher is None:
        logger.info(metrics.COUNTING_STARTED)
        _counter.start_serving()


def mark_step(model_runner, forward_batch, *args, **kwargs) -> None:
    """BEFORE hook of ``ModelRunner.forward``: the batch's tokens before any CUDA-graph padding."""
    if _counter is not None and forward_batch.input_ids is not None:
        _step_tokens.fill_(forward_batch.input_ids.shape[0])


def step_padding(num_tokens: int, device) -> torch.Tensor:
    """[num_tokens] bool, True on the rows past the current forward's real tokens (CUDA-graph padding)."""
    return torch.arange(num_tokens, device=device) >= _step_tokens


def _prometheus_sink(config: LongcatConfig):
    from prometheus_client import Counter, Gauge  # after the launcher set PROMETHEUS_MULTIPROC_DIR
    from sglang.srt.runtime_context import get_serving

    label = {"model_name": get_serving().served_model_name}
    counters = {name: Counter(name, metrics.HELP[name], labelnames=list(label)).labels(**label)
                for name in (metrics.ZERO_SLOTS, metrics.SLOTS)}
    gauges = {name: Gauge(name, metrics.HELP[name], labelnames=list(label), multiprocess_mode="mostrecent")
              .labels(**label) for name in (metrics.ZERO_RATIO, metrics.ACTIVATED)}
    published = [0, 0]

    def sink(zero: int, slots: int) -> None:
        counters[metrics.ZERO_SLOTS].inc(zero - published[0])
        counters[metrics.SLOTS].inc(slots - published[1])
        published[:] = zero, slots
        ratio = metrics.zero_ratio(zero, slots)
        gauges[metrics.ZERO_RATIO].set(ratio)
        gauges[metrics.ACTIVATED].set(metrics.activated_params_per_token(config, ratio))
    return sink
