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


def test_slot_counter_skips_padding_and_accumulates():
    counter = metrics.SlotCounter(device="cpu")
    ids = torch.tensor([[-1, 3, -1], [2, -1, 5], [-1, -1, -1]], dtype=torch.int32)
    counter.add(ids)
    assert counter.totals() == (6, 9)
    counter.add(ids, is_padding=torch.tensor([False, False, True, True]))  # buffer longer than the batch
    assert counter.totals() == (9, 15)
    assert metrics.zero_ratio(*counter.totals()) == pytest.approx(0.6)
    assert metrics.zero_ratio(0, 0) == 0.0


def test_slot_counter_updates_inside_a_compiled_function():
    counter = metrics.SlotCounter(device="cpu")

    @torch.compile(backend="inductor", fullgraph=True)
    def step(ids, is_padding=None):
        counter.add(ids, is_padding)
        return ids + 1

    for t in (3, 5, 3):
        step(torch.full((t, 2), -1, dtype=torch.int32))
    assert counter.totals() == (22, 22)
    step(torch.full((4, 2), -1, dtype=torch.int32), torch.tensor([False, True, False, True, True]))
    assert counter.totals() == (26, 26)


def test_counting_switch(monkeypatch):
    monkeypatch.delenv(metrics.SWITCH_ENV, raising=False)
    assert metrics.counting_on()
    for value, on in (("0", False), ("off", False), ("1", True), ("True", True)):
        monkeypatch.setenv(metrics.SWITCH_ENV, value)
        assert metrics.counting_on() is on
    monkeypatch.setenv(metrics.SWITCH_ENV, "no")
    with pytest.raises(ValueError, match="LONGCAT_METRICS='no'"):
        metrics.counting_on()
