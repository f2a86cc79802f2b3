"""Zero-expert metrics on SGLang's /metrics (``--enable-metrics``; docs/metrics.md).

SGLang's schedulers, which run the model, already publish their metrics through Prometheus
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by the launcher before it starts them; the HTTP
server's /metrics merges every process's files). The counts go the same way: the MoE layers add to one
device-side ``SlotCounter`` per process and a thread moves the totals into prometheus_client metrics.

Each token is counted once: only TP rank 0 counts (every TP / EP rank routes the same tokens, and
with DP attention the MoE layers see the tokens of every DP rank gathered). CUDA-graph padding is
masked with ``forward_batch.num_token_non_padded``, the device scalar SGLang's own top-k masks with.
"""

import torch

from longcat_common import metrics
from longcat_common.config import LongcatConfig

_counter: metrics.SlotCounter | None = None


def rank_counter(config: LongcatConfig) -> metrics.SlotCounter | None:
    """The process's counter (call while SGLang builds the model, under its target device), or None
    where metrics are off or this rank does not count."""
    global _counter
    from sglang.srt.distributed.parallel_state import get_tensor_model_parallel_rank
    from sglang.srt.runtime_context import get_observability

    if (not get_observability().enable_metrics or not metrics.counting_on()
            or get_tensor_model_parallel_rank() != 0):
        return None
    if _counter is None:
        _counter = metrics.SlotCounter(device=None)
        metrics.start_flusher(_counter, _prometheus_sink(config))
    return _counter


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


def non_padded_mask(num_token_non_padded: torch.Tensor | None, num_tokens: int, device) -> torch.Tensor | None:
    """[num_tokens] bool, True on CUDA-graph padding rows; None where SGLang does not pad (eager, CPU)."""
    if num_token_non_padded is None:
        return None
    return torch.arange(num_tokens, device=device) >= num_token_non_padded
