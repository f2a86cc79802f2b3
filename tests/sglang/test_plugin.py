"""The entry point's registration and its SGLang hooks, in process (the servers test them for real)."""

import os

import pytest

from longcat_sglang import metrics, plugin, spec_cpu
from longcat_sglang.model import LongcatFlashForCausalLM
from longcat_sglang.mtp import LongcatFlashForCausalLMNextN


def test_register_replaces_the_builtin_class():
    from sglang.srt.models.registry import ModelRegistry

    builtin, _ = ModelRegistry.resolve_model_cls(["LongcatFlashForCausalLM"])
    assert builtin.__module__ == "sglang.srt.models.longcat_flash"
    builtin_draft, _ = ModelRegistry.resolve_model_cls(["LongcatFlashForCausalLMNextN"])
    assert builtin_draft.__module__ == "sglang.srt.models.longcat_flash_nextn"
    plugin.register()
    assert ModelRegistry.resolve_model_cls(["LongcatFlashForCausalLM"]) == (LongcatFlashForCausalLM,
                                                                            "LongcatFlashForCausalLM")
    assert ModelRegistry.resolve_model_cls(["LongcatFlashForCausalLMNextN"]) == (LongcatFlashForCausalLMNextN,
                                                                                 "LongcatFlashForCausalLMNextN")
    from sglang.srt.plugins.hook_registry import HookRegistry, HookType

    for target, hook in (("sglang.srt.managers.scheduler.Scheduler.run_event_loop", metrics.start_serving),
                         ("sglang.srt.model_executor.model_runner.ModelRunner.forward", metrics.mark_step)):
        assert (HookType.BEFORE, hook) in [(kind, h) for kind, h, _ in HookRegistry._hooks[target]], target


def test_enable_ep_moe_means_ep_size_tp():
    def rewrite(args):
        result = plugin._enable_ep_moe_compat(args)
        return args if result is None else result[0][0]
    assert rewrite(["--tp", "8", "--enable-ep-moe"]) == ["--tp", "8", "--ep-size", "8"]
    assert rewrite(["--tp-size=4", "--enable-ep-moe"]) == ["--tp-size=4", "--ep-size", "4"]
    assert rewrite(["--tp", "4", "--enable-ep-moe", "--ep", "2"]) == ["--tp", "4", "--ep", "2"]
    assert rewrite(["--tp", "4"]) == ["--tp", "4"]


def test_pynccl_is_turned_off_on_gloo_groups_only():
    calls = []

    def init_group(group_ranks, local_rank, backend, **kwargs):
        calls.append((backend, kwargs.get("use_pynccl")))
    plugin._no_pynccl_on_gloo(init_group, [[0, 1]], 0, "gloo", group_name="tp")
    plugin._no_pynccl_on_gloo(init_group, group_ranks=[[0, 1]], local_rank=0, backend="nccl", group_name="tp")
    assert calls == [("gloo", False), ("nccl", None)]


def test_triton_interpreter_only_for_speculation_on_cpu(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    spec_cpu.triton_interpreter_for_cpu_speculation(["--device", "cpu", "--tp", "2"])
    assert "TRITON_INTERPRET" not in os.environ
    spec_cpu.triton_interpreter_for_cpu_speculation(["--device", "cuda", "--speculative-algorithm", "NEXTN"])
    assert "TRITON_INTERPRET" not in os.environ
    with pytest.raises(ValueError, match="--speculative-eagle-topk 1"):
        spec_cpu.triton_interpreter_for_cpu_speculation(
            ["--device=cpu", "--speculative-algorithm", "NEXTN", "--speculative-eagle-topk", "2"])
    spec_cpu.triton_interpreter_for_cpu_speculation(
        ["--device", "cpu", "--speculative-algorithm", "NEXTN", "--speculative-eagle-topk", "1"])
    assert os.environ["TRITON_INTERPRET"] == "1"
