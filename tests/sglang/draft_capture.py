"""Forward hooks for SGLang's ``--forward-hooks``: record what the served NEXTN draft model computes.

``hook_specs(path)`` gives the server argument. Two hooks share one state: the one on the draft's
``eh_proj`` (a module only the MTP draft has) marks a draft forward, and the one on ``logits_processor``
(both models have one) then appends the draft's input tokens (token t+1), their positions t, its
logits rows and, for the draft-extend after a verify, how many rows of each request hold verified
tokens, to ``path`` (one pickle per forward, read back by ``read_records``).
"""

import json
import pickle


def hook_specs(path) -> str:
    factory = f"{__name__}:factory"
    return json.dumps([
        {"name": "draft-mark", "target_modules": ["model.layers.0.eh_proj"], "hook_factory": factory,
         "config": {"path": str(path), "role": "mark"}},
        {"name": "draft-logits", "target_modules": ["logits_processor"], "hook_factory": factory,
         "config": {"path": str(path), "role": "record"}},
    ])


_in_draft_forward = [False]


def factory(config: dict):
    if config["role"] == "mark":
        def mark(_module, _args, _output):
            _in_draft_forward[0] = True
        return mark

    def record(_module, args, output):
        if not _in_draft_forward[0]:
            return
        _in_draft_forward[0] = False
        input_ids, _hidden, _lm_head, forward_batch = args[:4]
        accepted = getattr(forward_batch.spec_info, "num_accept_tokens", None)
        with open(config["path"], "ab") as f:
            pickle.dump({"input_ids": input_ids.tolist(), "positions": forward_batch.positions.tolist(),
                        "logits": output.next_token_logits.float().clone(),
                        "num_accept_tokens": None if accepted is None else accepted.tolist(),
                        "mode": forward_batch.forward_mode.name}, f)
    return record


def read_records(path) -> list[dict]:
    records = []
    with open(path, "rb") as f:
        while True:
            try:
                records.append(pickle.load(f))
            except EOFError:
                return records
