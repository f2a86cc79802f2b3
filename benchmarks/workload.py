"""The decode workload every throughput benchmark here times: greedy, EOS ignored, fixed random prompts."""

import torch

PROMPT_LEN, NEW_TOKENS = 16, 64


def prompts(batch: int) -> list[list[int]]:
    """``batch`` token-id prompts of PROMPT_LEN tokens (BOS first), the same for a given batch size."""
    gen = torch.Generator().manual_seed(batch)
    return [[1] + torch.randint(10, 900, (PROMPT_LEN - 1,), generator=gen).tolist() for _ in range(batch)]
