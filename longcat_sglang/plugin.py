"""SGLang plugin entry point (``sglang.srt.plugins``): serve LongCat-Flash with longcat_sglang.

SGLang calls ``register()`` early in every process it starts, whatever the model. It logs and swallows
any exception from a plugin and then silently serves its built-in class, so a failure here is logged
loudly. Every hook below does nothing unless longcat_sglang serves the model (serving.py), except
``_no_pynccl_on_gloo`` (docs/sglang.md says why).
"""

import logging
from pathlib import Path

from longcat_common.checkpoint_files import check_checkpoint_dir
from longcat_common.metrics import counting_on
from longcat_sglang import serving
from longcat_sglang.compat import check_engine_version

logger = logging.getLogger(__name__)
MODEL_FLAGS = ("--model-path", "--model")


def flag_value(args: list[str], flags: tuple[str, ...]) -> str | None:
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if name in flags:
            return value if eq else (args[i + 1] if i + 1 < len(args) else None)
    return None


def cpu_launch_of_ours(args: list[str]) -> bool:
    """``launch_server`` arguments with ``--device cpu`` for a model longcat_sglang serves."""
    return flag_value(args, ("--device",)) == "cpu" and serving.serves_model(flag_value(args, MODEL_FLAGS))


def _enable_ep_moe_compat(args, *rest, **kwargs):
    """``--enable-ep-moe`` (older SGLang, still in LongCat's deployment guide) = ``--ep-size <tp size>``.

    SGLang 0.5.23 only knows ``--ep-size``; a BEFORE hook on ``prepare_server_args`` rewrites the argv.
    """
    if "--enable-ep-moe" not in args or not serving.serves_model(flag_value(args, MODEL_FLAGS)):
        return None
    args = [a for a in args if a != "--enable-ep-moe"]
    tp = flag_value(args, ("--tp", "--tp-size", "--tensor-parallel-size")) or "1"
    if flag_value(args, ("--ep", "--ep-size", "--expert-parallel-size")) is None:
        args += ["--ep-size", tp]
    return (args, *rest), kwargs


def _check_checkpoint(args, *rest, **kwargs):
    """Stops ``launch_server`` on a broken local LongCat checkpoint before it starts any process: config,
    shard files and tensor names / shapes (longcat_common.checkpoint_files); values are checked at load."""
    path = flag_value(args, MODEL_FLAGS)
    if path and Path(path, "config.json").is_file() and serving.serves_model(path):
        counting_on()  # a bad LONGCAT_METRICS value stops here too, not later in the scheduler
        check_checkpoint_dir(path)
    return None


def _no_pynccl_on_gloo(init_group, group_ranks, local_rank, backend, *args, **kwargs):
    """``--device cpu --tp N``: SGLang builds its process groups on gloo but still opens a pynccl (CUDA)
    communicator on each and stops there. Without it, its all-reduce runs on the gloo group."""
    if backend == "gloo":
        kwargs["use_pynccl"] = False
    return init_group(group_ranks, local_rank, backend, *args, **kwargs)


def register_parsers() -> None:
    """Into SGLang's parser tables. ``sglang.launch_server`` runs the plugins before it parses its
    arguments, and takes the ``--tool-call-parser`` / ``--reasoning-parser`` choices from these tables
    once their modules are imported (from static name lists otherwise)."""
    from sglang.srt.function_call.function_call_parser import FunctionCallParser
    from sglang.srt.parser.reasoning_parser import ReasoningParser

    from longcat_sglang.parsers import LongcatJsonDetector, LongcatReasoningDetector, LongcatXmlDetector

    FunctionCallParser.ToolCallParserEnum.update(longcat=LongcatJsonDetector, longcat_xml=LongcatXmlDetector)
    ReasoningParser.DetectorMap["longcat"] = LongcatReasoningDetector


def register() -> None:
    """Runs once per SGLang process; logs nothing unless the installed SGLang is outside compat.SUPPORTED."""
    from sglang.srt.plugins.hook_registry import HookRegistry, HookType

    from longcat_sglang import dp_cpu, metrics, ngram, spec_cpu
    from longcat_sglang.request_guard import check_chat_roles, check_model_name, check_n, check_request

    srt, tree = "sglang.srt.", "sglang.kernels.ops.speculative.spec_tree."
    hooks = [  # (what, hook, when): each does nothing unless we serve the model, but _no_pynccl_on_gloo
        (srt + "server_args.prepare_server_args", _enable_ep_moe_compat, HookType.BEFORE),
        (srt + "server_args.prepare_server_args", _check_checkpoint, HookType.BEFORE),
        (srt + "distributed.parallel_state.init_model_parallel_group", _no_pynccl_on_gloo, HookType.AROUND),
        (srt + "managers.tokenizer_manager.TokenizerManager._validate_one_request", check_request, HookType.BEFORE),
        (srt + "entrypoints.openai.serving_chat.OpenAIServingChat._validate_request", check_chat_roles, HookType.AFTER),
        (srt + "managers.io_struct.GenerateReqInput._handle_parallel_sampling", check_n, HookType.BEFORE),
        (srt + "entrypoints.openai.serving_base.OpenAIServingBase.handle_request", check_model_name, HookType.AROUND),
        (srt + "server_args.prepare_server_args", spec_cpu.triton_interpreter_for_cpu_speculation, HookType.BEFORE),
        # DP attention on the CPU path (dp_cpu.py)
        (srt + "server_args.prepare_server_args", dp_cpu.triton_interpreter_for_cpu_dp_attention, HookType.BEFORE),
        (srt + "model_executor.forward_batch_info.ForwardBatch.prepare_mlp_sync_batch",
         dp_cpu.cpu_batch_branches, HookType.AROUND),
        (srt + "distributed.parallel_state.GroupCoordinator.all_gather_into_tensor",
         dp_cpu.all_gather_on_cpu_tensors, HookType.AROUND),
        # zero-expert counting (longcat_sglang/metrics.py): from the end of start-up on, real tokens only
        (srt + "managers.scheduler.Scheduler.run_event_loop", metrics.start_serving, HookType.BEFORE),
        (srt + "model_executor.model_runner.ModelRunner.forward", metrics.mark_step, HookType.BEFORE),
        # speculative decoding on the CPU path (spec_cpu.py)
        (srt + "speculative.draft_utils.DraftBackendFactory.create_draft_extend_backend",
         spec_cpu.torch_native_draft_extend_backend, HookType.AROUND),
        (srt + "layers.attention.torch_native_backend.TorchNativeAttnBackend.forward_extend",
         spec_cpu.torch_native_target_verify, HookType.AROUND),
        (tree + "build_tree_kernel_efficient_func", spec_cpu.triton_tree_on_cpu, HookType.AROUND),
        (tree + "verify_tree_greedy_func", spec_cpu.triton_verify_on_cpu, HookType.AROUND),
        # Flash-Lite: SGLang's n-gram token table (a CUDA kernel run by the scheduler) off for our classes
        (srt + "model_executor.model_runner_components.ngram_embedding_manager.NgramEmbeddingManager.from_model",
         ngram.sglangs_token_table_off, HookType.AROUND),
        # the class per config: ours, or SGLang's own for the variants we do not implement (serving.py)
        (srt + "model_loader.utils.get_model_architecture", serving.builtin_for_unsupported, HookType.AFTER),
    ]
    for what, hook, when in hooks:
        HookRegistry.register(what, hook, when)

    try:
        from sglang.srt.models.registry import ModelRegistry

        from longcat_sglang.model import LongcatFlashForCausalLM
        from longcat_sglang.mtp import LongcatFlashForCausalLMNextN
    except Exception:
        logger.exception("longcat-flash-plugins: could not import longcat_sglang; SGLang would fall back "
                         "to its built-in %s", " and ".join(serving.REGISTERED))
        raise
    # SGLang loads every LongCat config as its LongcatFlashConfig with architecture LongcatFlashForCausalLM
    # (utils/hf_transformers/config.py), the NEXTN draft's as LongcatFlashForCausalLMNextN: two entries.
    serving.capture_builtin(ModelRegistry)
    dp_cpu.add_torch_native_padding_seq_len()
    ModelRegistry.models.update(zip(serving.REGISTERED, (LongcatFlashForCausalLM, LongcatFlashForCausalLMNextN)))
    register_parsers()
    check_engine_version(logger)
