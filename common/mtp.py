"""The MTP (multi-token prediction) draft layer's data flow, written once for every engine.

LongCat-Flash ships one MTP layer (``num_nextn_predict_layers = 1``). Draft row t sees the embedding of
token t+1 and the target's hidden state at t, and predicts token t+2:

    x = eh_proj(concat[enorm(embed(token_{t+1})), hnorm(h_t)])      # [T, 2H] -> [T, H], embedding FIRST
    x = x + attn(input_norm(x))                                      # one MLA sublayer, LoRA-scaled like the target's
    x = x + mlp(post_attention_norm(x))                              # dense SwiGLU (ffn_hidden_size), no MoE
    out = final_norm(x)  -> the target's lm_head                     # checkpoint: model.mtp.norm

Where each detail comes from (vLLM 0.32 ``model_executor/models/longcat_flash_mtp.py``, SGLang 0.5.23
``srt/models/longcat_flash_nextn.py``, and an SGLang fork carrying Meituan's LongCat models,
ZunhaiSu/SGLang-FluentLLM ``srt/models/flash_nextn.py``; all three agree):
  * concat order: ``cat([enorm(embeds), hnorm(previous_hidden)])`` in all three.
  * h_t: the hidden state the target hands to its logits, i.e. AFTER the target's final norm (vLLM's
    proposer passes the target model's forward output, which ends in ``model.norm``; SGLang captures the
    hidden states given to its LogitsProcessor, also after ``model.norm``). With num_speculative_tokens
    > 1 the next draft step takes this layer's own ``out`` (after its final norm) in the place of h_t.
  * eps: every norm here uses ``rms_norm_eps`` (RMSNorm(hidden, eps=config.rms_norm_eps) in all three).
  * decoder: a dense layer (vLLM builds DeepseekV2DecoderLayer with n_routed_experts=None; SGLang and
    FluentLLM a dense decoder layer), MLA LoRA norms scaled at load like the target's.
  * KV cache: vLLM gives the MTP attention the layer index 2 * num_layers, i.e. the name
    ``model.layers.{2L}.self_attn`` after the target's 2L MLA sublayers in the shared KV-cache config;
    SGLang's draft has its own KV pool and uses layer_id 0.
  * embedding and lm_head: shared with the target (no MTP lm_head is stored; ``model.mtp.embed_tokens``
    may be, as a copy).

Norm steps follow ``longcat_common.layer``'s fused add-RMSNorm convention: (h, residual or None) ->
(normed, new residual).
"""

from dataclasses import dataclass
import torch

from .config import LongcatConfig
from .layer import Block, Norm


@dataclass
class MtpLayerSteps:
    embed_norm: Block  # enorm: [T, H] -> [T, H]
    hidden_norm: Block  # hnorm: [T, H] -> [T, H]
    eh_proj: Block  # [T, 2H] -> [T, H]
    input_norm: Norm
    attention: Block  # the adapter binds positions / batch metadata
    post_attention_norm: Norm
    mlp: Block
    final_norm: Norm


def mtp_layer_forward(steps: MtpLayerSteps, embeds: torch.Tensor, previous_hidden: torch.Tensor) -> torch.Tensor:
    """embeds [T, H] (of tokens t+1), previous_hidden [T, H] (target's post-norm h_t) -> draft hidden [T, H].

    The result is already final-normed: the target's lm_head turns it into logits for tokens t+2, and a
    further draft step takes it as its ``previous_hidden``.
    """
    x = steps.eh_proj(torch.cat([steps.embed_norm(embeds), steps.hidden_norm(previous_hidden)], dim=-1))
    h, residual = steps.input_norm(x, None)
    h = steps.attention(h)
    h, residual = steps.post_attention_norm(h, residual)
    h = steps.mlp(h)
    out, _ = steps.final_norm(h, residual)
    return out


def mtp_attention_layer_index(config: LongcatConfig) -> int:
    """vLLM's KV-cache layer index of the MTP attention: after the target's 2 * num_layers MLA sublayers."""
    return config.num_attention_layers


def require_mtp_layer(config: LongcatConfig) -> None:
    """Raises a clear error when the checkpoint has no MTP layer to draft with."""
    if config.num_nextn_predict_layers != 1:
        raise ValueError("LongCat-Flash MTP: the checkpoint's config has num_nextn_predict_layers="
                         f"{config.num_nextn_predict_layers}; MTP speculative decoding needs exactly 1 MTP layer")

