"""Dynamic-compute metrics: how many routed slots went to zero-computation experts, and what that means
in activated parameters per token (docs/metrics.md).

The MoE layers add to one device tensor per process (``SlotCounter``): no host sync per forward, and the
add is a fixed-shape tensor op, so it is recorded into CUDA graphs and replayed with them. Counting and
a background thread (``start_flusher``: it reads the totals once per interval and hands them to the
engine's sink) start when the engine's start-up is over (``SlotCounter.start_serving``).
"""

import os
import threading
import time

import torch

from longcat_common.config import LongcatConfig

ZERO_RATIO = "longcat_zero_expert_slot_ratio"
ACTIVATED = "longcat_activated_params_per_token"
ZERO_SLOTS = "longcat_zero_expert_slots"  # Prometheus counters (``_total`` is added on exposure)
SLOTS = "longcat_routed_slots"
HELP = {
    ZERO_RATIO: "Share of routed top-k slots that went to zero-computation experts, over all tokens served",
    ACTIVATED: "Activated parameters per token (embedding lookup excluded), averaged over all tokens served",
    ZERO_SLOTS: "Routed top-k slots that went to zero-computation experts (summed over MoE layers)",
    SLOTS: "Routed top-k slots (tokens x MoE layers x top-k)",
}


COUNTING_STARTED = "longcat-flash-plugins: zero-expert slot counting started (engine start-up over)"
FLUSH_INTERVAL = 0.5  # seconds between a worker's publications of its totals (start_flusher)
SWITCH_ENV = "LONGCAT_METRICS"  # "0": no counting and no LongCat series on /metrics


def counting_on() -> bool:
    """Whether the servers count zero-expert slots (on unless ``LONGCAT_METRICS=0``)."""
    value = os.environ.get(SWITCH_ENV, "1").strip().lower()
    if value not in ("0", "1", "off", "on", "false", "true"):
        raise ValueError(f"{SWITCH_ENV}={os.environ[SWITCH_ENV]!r}: use 1 (count, the default) or 0 (off)")
    return value in ("1", "on", "true")


class SlotCounter:
    """[zero slots, all slots] as one int64 tensor on the model's device, for every MoE layer of a rank.

    Counting is off until the engine's start-up is over (``start_serving``, called by the adapter at one
    engine point that is the same on every device). Before it the engine profiles, compiles, warms up
    and captures CUDA graphs: none of those forwards serves a token, and a CUDA call from another
    thread during a capture (torch's default ``capture_error_mode="global"``) invalidates the capture,
    so the publishing thread starts only then too. ``enabled`` (0 or 1, on the device) gates every add:
    a captured graph reads it at replay, and the host flips it between forwards (``set_enabled``), never
    from inside a forward that a compiled or captured graph would freeze."""

    def __init__(self, device, sink, interval: float = FLUSH_INTERVAL):
        self.counts = torch.zeros(2, dtype=torch.int64, device=device)
        self.enabled = torch.zeros((), dtype=torch.int64, device=device)
        self._sink, self._interval = sink, interval
        self.flusher: threading.Thread | None = None

    def add(self, topk_ids: torch.Tensor, is_padding: torch.Tensor | None = None) -> None:
        """topk_ids [T, k] (zero slots < 0); is_padding [>= T] bool marks padded rows, which are not
        counted. Four small ops (seven with a padding mask): each is a dispatch, or a kernel in a CUDA graph."""
        tokens, k = topk_ids.shape
        zero = topk_ids < 0
        if is_padding is not None:
            zero.masked_fill_(is_padding[:tokens, None], False)
        self.counts[0].addcmul_(zero.sum(), self.enabled)
        self.counts[1].add_(self.enabled, alpha=tokens * k)
        if is_padding is not None:
            self.counts[1].addcmul_(is_padding[:tokens].sum(), self.enabled, value=-k)

    def set_enabled(self, on: bool) -> None:
        """Host side, between forwards: whether the forwards that follow count (e.g. off for a data-parallel
        rank's dummy batch)."""
        self.enabled.fill_(int(on))

    def start_serving(self) -> None:
        """Once, when the engine's start-up is over: counting on, and the thread that publishes the totals."""
        self.set_enabled(True)
        if self.flusher is None:
            self.flusher = start_flusher(self, self._sink, self._interval)

    def totals(self) -> tuple[int, int]:
        zero, slots = self.counts.tolist()
        return zero, slots


def zero_ratio(zero_slots: int, slots: int) -> float:
    return zero_slots / slots if slots else 0.0


def activated_params_per_token(config: LongcatConfig, zero_slot_ratio: float) -> float:
    """Mean activated parameters per token for a zero-slot share (``LongcatConfig.activated_params``:
    fixed part + real-expert slots x expert size, which is linear in the number of real slots)."""
    if not 0.0 <= zero_slot_ratio <= 1.0:
        raise ValueError(f"zero_slot_ratio must be in [0, 1], got {zero_slot_ratio}")
    fixed = config.activated_params(0)
    return fixed + (1.0 - zero_slot_ratio) * (config.activated_params(config.moe_topk) - fixed)


def start_flusher(counter: SlotCounter, sink, interval: float = FLUSH_INTERVAL) -> threading.Thread:
    """Daemon thread: every ``interval`` s, ``sink(zero_slots, slots)`` with the running totals (only when
    they changed). Reading a CUDA tensor here syncs once per interval, never per forward; it is started
    by ``SlotCounter.start_serving`` only, after start-up (see SlotCounter)."""
    def loop():
        last = None
        while True:
            time.sleep(interval)
            now = counter.totals()
            if now != last:
                sink(*now)
                last = now
    thread = threading.Thread(target=loop, name="longcat-metrics", daemon=True)
    thread.start()
    return thread
