import threading
import time

import pytest
import torch

from longcat_common import metrics
from longcat_common.config import LongcatConfig

from .test_config import CHAT


def test_activated_params_span_the_flash_chat_range():
    c = LongcatConfig.from_dict(CHAT)
    assert metrics.activated_params_per_token(c, 1.0) == c.activated_params(0)  # 18.69B
    assert metrics.activated_params_per_token(c, 0.0) == c.activated_params(12)  # 31.38B
    assert round(c.activated_params(0) / 1e9, 2) == 18.69 and round(c.activated_params(12) / 1e9, 2) == 31.38
    # 4 of 12 slots on zero experts: fixed part + 8 real slots x the expert size
    assert metrics.activated_params_per_token(c, 4 / 12) == pytest.approx(c.activated_params(8))
    with pytest.raises(ValueError, match="zero_slot_ratio"):
        metrics.activated_params_per_token(c, 1.5)


def _serving_counter() -> metrics.SlotCounter:
    counter = metrics.SlotCounter(device="cpu", sink=lambda zero, slots: None)
    counter.set_enabled(True)
    return counter


def test_slot_counter_skips_padding_and_accumulates():
    counter = _serving_counter()
    ids = torch.tensor([[-1, 3, -1], [2, -1, 5], [-1, -1, -1]], dtype=torch.int32)
    counter.add(ids)
    assert counter.totals() == (6, 9)
    counter.add(ids, is_padding=torch.tensor([False, False, True, True]))  # buffer longer than the batch
    assert counter.totals() == (9, 15)
    assert metrics.zero_ratio(*counter.totals()) == pytest.approx(0.6)
    assert metrics.zero_ratio(0, 0) == 0.0


def test_slot_counter_updates_inside_a_compiled_function():
    counter = _serving_counter()

    @torch.compile(backend="inductor", fullgraph=True)
    def step(ids, is_padding=None):
        counter.add(ids, is_padding)
        return ids + 1

    for t in (3, 5, 3):
        step(torch.full((t, 2), -1, dtype=torch.int32))
    assert counter.totals() == (22, 22)
    step(torch.full((4, 2), -1, dtype=torch.int32), torch.tensor([False, True, False, True, True]))
    assert counter.totals() == (26, 26)


def _publishers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "longcat-metrics"]


def test_nothing_counts_or_publishes_before_start_up_is_over():
    """Start-up forwards (profile, warm-up, CUDA-graph capture) add nothing, and no thread of ours exists
    before start_serving: a CUDA call from another thread would invalidate a capture."""
    published, before = [], len(_publishers())
    counter = metrics.SlotCounter(device="cpu", sink=lambda zero, slots: published.append((zero, slots)),
                                  interval=0.01)
    ids = torch.tensor([[-1, 3], [2, -1]], dtype=torch.int32)

    @torch.compile(backend="inductor", fullgraph=True)
    def captured(ids):  # a graph traced during start-up reads the flag at every later run
        counter.add(ids)
        return ids + 1

    captured(ids)
    counter.add(ids)
    assert counter.totals() == (0, 0) and counter.flusher is None and len(_publishers()) == before
    counter.start_serving()
    counter.start_serving()  # once only
    assert counter.flusher.is_alive() and len(_publishers()) == before + 1
    captured(ids)
    counter.set_enabled(False)  # e.g. a data-parallel dummy batch
    captured(ids)
    counter.set_enabled(True)
    counter.add(ids)
    assert counter.totals() == (4, 8)
    deadline = time.monotonic() + 5
    while (4, 8) not in published and time.monotonic() < deadline:
        time.sleep(0.01)
    assert published[-1] == (4, 8)


def test_counting_switch(monkeypatch):
    monkeypatch.delenv(metrics.SWITCH_ENV, raising=False)
    assert metrics.counting_on()
    for value, on in (("0", False), ("off", False), ("1", True), ("True", True)):
        monkeypatch.setenv(metrics.SWITCH_ENV, value)
        assert metrics.counting_on() is on
    monkeypatch.setenv(metrics.SWITCH_ENV, "no")
    with pytest.raises(ValueError, match="LONGCAT_METRICS='no'"):
        metrics.counting_on()
