"""Weights of the ``draft`` preset: a random checkpoint whose MTP draft is good (python -m longcat_common.testing.tiny
OUT --preset draft), so speculative decoding accepts most draft tokens and a wrong draft shows.

The ``lite-draft`` preset is the same for Flash-Lite (n-gram embeddings; see the embedding scale below).

Target: the next token is mostly a fixed function of the current one, ``perm(current)`` for a random
permutation ``perm`` of the predictable tokens: lm_head row perm(i) is token i's unit embedding
(LOGIT_GAIN), so the final hidden state, which starts as the current token's embedding, points at
perm(current). The embeddings are EMBED_SCALE times the default init, small enough that the random
layers move the residual off the bigram at some positions (so acceptance is high but not 1: 0.94-0.98
measured, docs/mtp.md).

MTP: draft row t reads token t+1 and the target's hidden state at t and must predict token t+2, which
is mostly perm(token t+1). eh_proj's embedding half is EH_EMBED_GAIN times the identity, so the MTP
output leans towards token t+1's embedding and the shared lm_head turns it into perm(token t+1); its
hidden half and the MTP attention / MLP are random (default init), so the hidden state, the attention
and the layer's norms all move the draft logits, and the draft misses where the target leaves the
bigram. The reference (tests/common/reference_mtp.py) predicts the acceptance; docs/mtp.md has figures.
"""

import torch

from ..checkpoint import MTP_EMBEDDING, MTP_PREFIX
from ..config import LongcatConfig

EMBED_SCALE = 0.25
LOGIT_GAIN = 0.8  # lm_head row norm: the logit of perm(current) is about LOGIT_GAIN * sqrt(H)
EH_EMBED_GAIN = 1.0


def good_draft_weights(weights: dict[str, torch.Tensor], config: LongcatConfig, muted: list[int],
                       gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Rewrites the embeddings, lm_head and the MTP eh_proj of random ``weights`` (in place) as above."""
    h, v = config.hidden_size, config.vocab_size
    dtype = weights["model.embed_tokens.weight"].dtype
    # Flash-Lite divides the token embedding by 1 + num_tables (longcat_common.ngram): as much larger here, so the
    # n-gram tables (as drawn) move the target off the bigram at some positions (lite-draft: 16 of 26 drafts
    # accepted, a third of the greedy tokens change without the n-gram part, over tests/vllm's prompts)
    embed = weights["model.embed_tokens.weight"].float() * EMBED_SCALE * (1 + (config.ngram.num_tables if config.ngram else 0))
    weights["model.embed_tokens.weight"] = embed.to(dtype)
    if MTP_EMBEDDING in weights:
        weights[MTP_EMBEDDING] = weights["model.embed_tokens.weight"].clone()

    muted_set = set(muted)
    live = torch.tensor([i for i in range(v) if i not in muted_set])
    perm = live[torch.randperm(len(live), generator=gen)]
    lm_head = torch.zeros(v, h)
    lm_head[perm] = LOGIT_GAIN * embed[live] / embed[live].norm(dim=-1, keepdim=True)
    weights["lm_head.weight"] = lm_head.to(dtype)

    eh = f"{MTP_PREFIX}layers.0.eh_proj.weight"
    eh_proj = weights[eh].float()
    eh_proj[:, :h] = EH_EMBED_GAIN * torch.eye(h)
    weights[eh] = eh_proj.to(weights[eh].dtype)
    return weights
