"""Checks that run in vLLM's front process when it builds its config, before any engine core or worker.

Registered for our architectures in vLLM's ``MODELS_CONFIG_MAP`` (plugin.py), whose hooks vLLM calls from
``VllmConfig.__post_init__``. A config we cannot serve, a broken local checkpoint
(longcat_common.checkpoint_files) and sizes vLLM cannot split stop the start there with one line, instead
of in every worker after start-up. Only a model that passes gets our metrics (longcat_vllm/metrics.py).
"""

import logging

import vllm
from longcat_common.checkpoint_files import check_checkpoint_dir, is_local_longcat
from longcat_common.config import LongcatConfig, unsupported_reason
from longcat_common.metrics import counting_on
from vllm.config.compilation import CUDAGraphMode
from vllm.platforms import current_platform
from vllm.v1.attention.backends.registry import AttentionBackendEnum
from vllm.model_executor.layers.vocab_parallel_embedding import DEFAULT_VOCAB_PADDING_SIZE, pad_vocab_size
from vllm.model_executor.models.config import VerifyAndUpdateConfig

from longcat_vllm.metrics import expose

logger = logging.getLogger("vllm.longcat_flash_plugins")


def refuse_unsupported(model_config) -> None:
    """A variant we do not implement reaches our class only where vLLM has no class of its own for its
    architecture name (longcat_vllm/variants.py hands the others back)."""
    reason = unsupported_reason(model_config.hf_config)
    if reason:
        raise ValueError(f"longcat-flash-plugins: config has {reason}, not implemented here, and vLLM "
                         f"{vllm.__version__} has no class of its own for {model_config.architecture}: "
                         "cannot serve it")


def check_tp_split(config: LongcatConfig, tp: int, expert_parallel: bool) -> None:
    """vLLM pads nothing but the vocabulary (to a multiple of 64) and splits with an exact division
    (``divide`` asserts), so every TP-split size must divide."""
    sizes = {"num_attention_heads": config.num_attention_heads, "ffn_hidden_size": config.ffn_hidden_size,
             "vocab_size (padded to a multiple of 64)": pad_vocab_size(config.vocab_size, DEFAULT_VOCAB_PADDING_SIZE)}
    if not expert_parallel:  # with EP every expert stays whole on its rank
        sizes["expert_ffn_hidden_size"] = config.expert_ffn_hidden_size
    for name, size in sizes.items():
        if size % tp:
            raise ValueError(f"LongCat-Flash: {name} {size} does not split over tensor parallel size {tp} "
                             "(vLLM does not pad it); use a tensor parallel size that divides it")


def reference_mla_on_cpu(vllm_config) -> None:
    """LongCat-Flash on a CPU takes vLLM's reference ``CPU_MLA`` backend unless another was asked for.

    vLLM's CPU platform picks its AMX MLA backend on every CPU with AMX tiles. That backend packs the
    absorbed MLA weights with a kernel that takes bf16 / fp16 / int8 / fp8 only
    (``convert_weight_packed``), so a float32 model stops in every worker, and with the FP8 checkpoint
    dequantised to bf16 its prompt log-probs were 0.83 nats off the oracle (CPU_MLA: within the bf16
    tolerance of tests/vllm/test_offline_parity.py)."""
    attention = vllm_config.attention_config
    if current_platform.is_cpu() and attention.backend is None:
        attention.backend = AttentionBackendEnum.CPU_MLA


def eager_for_cpu_data_parallel(vllm_config) -> None:
    """LongCat-Flash with data parallelism on a CPU runs eager.

    vLLM's CPU backend traces the MoE's DP all-gather into its compiled graph (on CUDA a custom op hides
    it), where every rank's token count is data-dependent: compiling stops at start ("Could not guard on
    data-dependent expression", from cpu_collectives.all_gatherv's padding). This runs before vLLM turns
    ``enforce_eager`` into compilation mode NONE (``VllmConfig.__post_init__``)."""
    model_config = vllm_config.model_config
    if current_platform.is_cpu() and vllm_config.parallel_config.data_parallel_size > 1 \
            and not model_config.enforce_eager:
        logger.warning("longcat-flash-plugins: data parallel on the CPU backend runs eager (vLLM cannot compile "
                       "the MoE's data-parallel all-gather there): --enforce-eager set")
        model_config.enforce_eager = True


def piecewise_graphs_for_lite(vllm_config, config: LongcatConfig) -> None:
    """Flash-Lite on CUDA: CUDA graphs around the compiled model only (PIECEWISE).

    Its n-gram embedding runs eagerly in front of the compiled model and is data-dependent (each request's
    history read from the KV-cache slots, longcat_vllm/ngram.py), so a FULL graph must not capture it.
    vLLM's own Lite config defaults to FULL graphs (``LongcatFlashNgramForCausalLMConfig``); ours takes
    its place for the name. A FULL mode asked for explicitly is refused."""
    graphs = vllm_config.compilation_config
    if not config.ngram or not current_platform.is_cuda_alike():
        return
    if graphs.cudagraph_mode is None:
        graphs.cudagraph_mode = CUDAGraphMode.PIECEWISE
        logger.info("longcat-flash-plugins: Flash-Lite runs its n-gram embedding outside CUDA graphs: "
                    "cudagraph_mode PIECEWISE")
    elif graphs.cudagraph_mode.has_full_cudagraphs():
        raise ValueError(f"longcat-flash-plugins: cudagraph_mode {graphs.cudagraph_mode.name} would capture "
                         "Flash-Lite's n-gram embedding, which reads each request's history per step; use "
                         "PIECEWISE or NONE")


class LongcatStartupCheck(VerifyAndUpdateConfig):
    @staticmethod
    def verify_and_update_config(vllm_config) -> None:
        model_config, parallel = vllm_config.model_config, vllm_config.parallel_config
        counting_on()  # a bad LONGCAT_METRICS value stops here, not later in a worker
        refuse_unsupported(model_config)
        if is_local_longcat(model_config.model):
            config = check_checkpoint_dir(model_config.model)
        else:
            config = LongcatConfig.from_hf(model_config.hf_config)
        check_tp_split(config, parallel.tensor_parallel_size, parallel.enable_expert_parallel)
        reference_mla_on_cpu(vllm_config)
        eager_for_cpu_data_parallel(vllm_config)
        piecewise_graphs_for_lite(vllm_config, config)
        expose(vllm_config, config)
