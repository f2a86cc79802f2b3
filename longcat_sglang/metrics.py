"""Zero-expert metrics on SGLang's /metrics (``--enable-metrics``; docs/metrics.md).

SGLang's schedulers, which run the model, already publish their metrics through Prometheus
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by the launcher before it starts them; the HTTP
server's /metrics merges every process's files). The counts go the same way: the MoE layers add to one
device-side ``SlotCounter`` per process and a thread moves the totals into prometheus_client metrics.

Each token is counted once: only TP rank 0 counts (every TP / EP rank routes the same tokens; under DP
attention the MoE layers of every rank route the tokens of all DP ranks, gathered: dp_gather.py).

Two SGLang points, the same on every device (plugin.py registers both hooks; they do nothing in a
process that serves no LongCat model):
  * start-up is over when the scheduler enters ``run_event_loop`` (SGLang's own marker: graph capture
    and warm-ups are done). Capture and its warm-up forwards call the model directly before that, so
    they are not counted, and the publishing thread starts only then (``SlotCounter.start_serving``).
  * every served forward goes through ``ModelRunner.forward``, which sees the batch before a CUDA graph
    or the DP padding pads it: its token count is written to a device tensor (``_real_tokens``) there,
    and rows past it are padding (SGLang's own ``num_token_non_padded`` is set only with EP or DP
    gathering). Under DP attention the batch carries every DP rank's count (``global_num_tokens_cpu``,
    all-gathered by the schedulers; an idle rank's is 0), one per slot of the gathered MoE input.
"""

import logging

import torch

from longcat_common import metrics
from longcat_common.config import LongcatConfig

logger = logging.getLogger(__name__)
_counter: metrics.SlotCounter | None = None
# [D] int64 on the model's device: the current forward's real tokens, per DP rank (D = 1 without DP attention)
_real_tokens: torch.Tensor | None = None


def rank_counter(config: LongcatConfig) -> metrics.SlotCounter | None:
    """The process's counter (call while SGLang builds the model, under its target device), or None
    where metrics are off or this rank does not count."""
    global _counter, _real_tokens
    from sglang.srt.distributed.parallel_state import get_tensor_model_parallel_rank
    from sglang.srt.runtime_context import get_observability, get_parallel

    if (not get_observability().enable_metrics or not metrics.counting_on()
            or get_tensor_model_parallel_rank() != 0):
        return None
    if _counter is None:
        _counter = metrics.SlotCounter(device=None, sink=_prometheus_sink(config))
        _real_tokens = torch.zeros(get_parallel().attn_dp_size, dtype=torch.int64)
    return _counter


def start_serving(*args, **kwargs) -> None:
    """BEFORE hook of ``Scheduler.run_event_loop``."""
    if _counter is not None and _counter.flusher is None:
        logger.info(metrics.COUNTING_STARTED)
        _counter.start_serving()


def mark_step(model_runner, forward_batch, *args, **kwargs) -> None:
    """BEFORE hook of ``ModelRunner.forward``: the batch's tokens before any CUDA-graph or DP padding."""
    if _counter is None or forward_batch.input_ids is None:
        return
    per_dp_rank = forward_batch.global_num_tokens_cpu  # set under DP attention, before prepare_mlp_sync_batch
    _real_tokens.copy_(torch.tensor(per_dp_rank or [forward_batch.input_ids.shape[0]]))


def step_padding(num_rows: int, device, dp_slots: torch.Tensor | None = None) -> torch.Tensor:
    """[num_rows] bool, True on padding rows: the MoE input is one slot (``dp_slots`` None) or, under DP
    attention, one slot per DP rank of ``dp_slots[r]`` rows; each holds its rank's real tokens, then
    CUDA-graph or DP padding. Device ops only (no host sync; a CUDA graph records them)."""
    rows = torch.arange(num_rows, device=device)
    if dp_slots is None:
        return rows >= _real_tokens[0]
    ends = dp_slots.cumsum(0)
    slot = torch.searchsorted(ends, rows, right=True).clamp_(max=len(dp_slots) - 1)
    return rows - (ends - dp_slots)[slot] >= _real_tokens[slot]


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
