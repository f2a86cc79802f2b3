"""The entry point's registration and its SGLang hooks, in process (the servers test them for real)."""

import os

import pytest

from longcat_common.testing.tiny import write_checkpoint
from longcat_sglang import compat, dp_cpu, metrics, plugin, spec_cpu
from longcat_sglang.model import LongcatFlashForCausalLM
from longcat_sglang.mtp import LongcatFlashForCausalLMNextN
from tests.other_model import write_llama


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

    for target, kind, hook in (
            ("sglang.srt.managers.scheduler.Scheduler.run_event_loop", HookType.BEFORE, metrics.start_serving),
            ("sglang.srt.model_executor.model_runner.ModelRunner.forward", HookType.BEFORE, metrics.mark_step),
            ("sglang.srt.model_executor.forward_batch_info.ForwardBatch.prepare_mlp_sync_batch", HookType.AROUND,
             dp_cpu.cpu_batch_branches),
            ("sglang.srt.distributed.parallel_state.GroupCoordinator.all_gather_into_tensor", HookType.AROUND,
             dp_cpu.all_gather_on_cpu_tensors)):
        assert (kind, hook) in [(k, h) for k, h, _ in HookRegistry._hooks[target]], target
    from sglang.srt.layers.attention.torch_native_backend import TorchNativeAttnBackend

    assert TorchNativeAttnBackend.get_cpu_graph_seq_len_fill_value is dp_cpu.torch_native_padding_seq_len


def test_enable_ep_moe_means_ep_size_tp_for_longcat_only(tiny_ckpt, tmp_path):
    def rewrite(args, model=str(tiny_ckpt)):
        args = ["--model-path", model, *args]
        result = plugin._enable_ep_moe_compat(args)
        return (args if result is None else result[0][0])[2:]
    assert rewrite(["--tp", "8", "--enable-ep-moe"]) == ["--tp", "8", "--ep-size", "8"]
    assert rewrite(["--tp-size=4", "--enable-ep-moe"]) == ["--tp-size=4", "--ep-size", "4"]
    assert rewrite(["--tp", "4", "--enable-ep-moe", "--ep", "2"]) == ["--tp", "4", "--ep", "2"]
    assert rewrite(["--tp", "4"]) == ["--tp", "4"]
    # another model, a LongCat variant SGLang's own class serves: SGLang's own answer (unknown argument)
    assert rewrite(["--tp", "8", "--enable-ep-moe"], str(write_llama(tmp_path / "llama"))) == \
        ["--tp", "8", "--enable-ep-moe"]
    sparse = write_checkpoint(tmp_path / "sparse", overrides={"index_topk": 16})
    assert rewrite(["--tp", "8", "--enable-ep-moe"], str(sparse)) == ["--tp", "8", "--enable-ep-moe"]
    lite = write_checkpoint(tmp_path / "lite", preset="lite")  # n-gram embeddings: ours
    assert rewrite(["--tp", "8", "--enable-ep-moe"], str(lite)) == ["--tp", "8", "--ep-size", "8"]


def test_pynccl_is_turned_off_on_gloo_groups_only():
    calls = []

    def init_group(group_ranks, local_rank, backend, **kwargs):
        calls.append((backend, kwargs.get("use_pynccl")))
    plugin._no_pynccl_on_gloo(init_group, [[0, 1]], 0, "gloo", group_name="tp")
    plugin._no_pynccl_on_gloo(init_group, group_ranks=[[0, 1]], local_rank=0, backend="nccl", group_name="tp")
    assert calls == [("gloo", False), ("nccl", None)]


def test_triton_interpreter_only_for_longcat_speculation_on_cpu(monkeypatch, tiny_ckpt, tmp_path):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    model = ["--model-path", str(tiny_ckpt)]
    spec_cpu.triton_interpreter_for_cpu_speculation([*model, "--device", "cpu", "--tp", "2"])
    assert "TRITON_INTERPRET" not in os.environ
    spec_cpu.triton_interpreter_for_cpu_speculation([*model, "--device", "cuda", "--speculative-algorithm", "NEXTN"])
    assert "TRITON_INTERPRET" not in os.environ
    llama = ["--model-path", str(write_llama(tmp_path))]
    spec_cpu.triton_interpreter_for_cpu_speculation(
        [*llama, "--device=cpu", "--speculative-algorithm", "NEXTN", "--speculative-eagle-topk", "2"])
    assert "TRITON_INTERPRET" not in os.environ
    with pytest.raises(ValueError, match="--speculative-eagle-topk 1"):
        spec_cpu.triton_interpreter_for_cpu_speculation(
            [*model, "--device=cpu", "--speculative-algorithm", "NEXTN", "--speculative-eagle-topk", "2"])
    spec_cpu.triton_interpreter_for_cpu_speculation(
        [*model, "--device", "cpu", "--speculative-algorithm", "NEXTN", "--speculative-eagle-topk", "1"])
    assert os.environ["TRITON_INTERPRET"] == "1"


def test_triton_interpreter_for_longcat_dp_attention_on_cpu(monkeypatch, tiny_ckpt, tmp_path):
    """SGLang's DP gathers copy rows with a Triton kernel (longcat_sglang/dp_cpu.py)."""
    def sets_interpreter(args) -> bool:
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
        dp_cpu.triton_interpreter_for_cpu_dp_attention(args)
        return os.environ.get("TRITON_INTERPRET") == "1"
    model = ["--model-path", str(tiny_ckpt)]
    assert sets_interpreter([*model, "--device", "cpu", "--tp", "2", "--dp", "2", "--enable-dp-attention"])
    assert sets_interpreter([*model, "--device=cpu", "--tp", "2", "--attn-dp-size=2"])
    assert not sets_interpreter([*model, "--device", "cpu", "--tp", "2", "--attn-dp-size", "1"])
    assert not sets_interpreter([*model, "--device", "cpu", "--tp", "2"])
    assert not sets_interpreter([*model, "--device", "cuda", "--tp", "2", "--attn-dp-size", "2"])
    llama = ["--model-path", str(write_llama(tmp_path))]
    assert not sets_interpreter([*llama, "--device", "cpu", "--tp", "2", "--attn-dp-size", "2"])


def test_engine_version_warning_names_installed_and_supported(monkeypatch, caplog):
    import logging

    import sglang

    logger = logging.getLogger("longcat_sglang.plugin")
    with caplog.at_level(logging.WARNING, logger=logger.name):
        compat.check_engine_version(logger)
        assert sglang.__version__ == "0.5.23" and caplog.messages == []
        monkeypatch.setattr(sglang, "__version__", "0.5.24")
        compat.check_engine_version(logger)
    assert caplog.messages == ["longcat-flash-plugins: SGLang 0.5.24 is outside the supported range ==0.5.23 "
                               "(transformers per release: 0.5.23: ==5.19.0); LongCat is served by our classes, "
                               "untested on this release"]
