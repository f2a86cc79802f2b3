"""Request checks SGLang 0.5.23 lacks, run where it validates each request (``TokenizerManager.
_validate_one_request``), so that a bad request is a 400 naming the field instead of an exception in the
scheduler that takes the whole server down:

* prompt token ids outside [0, vocab_size): the scheduler's embedding lookup raises ``IndexError`` (a
  device-side assert on GPU) and the server exits. SGLang checks ``token_ids_logprob`` but not the prompt.
* ``top_logprobs_num`` (``logprobs`` / ``top_logprobs`` in the OpenAI API) above the vocabulary or
  negative: the scheduler's top-k raises ``selected index k out of range`` and the server exits.
"""

from sglang.srt.managers.io_struct import GenerateReqInput


def check_request(tokenizer_manager, obj, input_ids, *args, **kwargs):
    """A BEFORE hook on ``TokenizerManager._validate_one_request(self, obj, input_ids)``."""
    if not isinstance(obj, GenerateReqInput):
        return None
    vocab_size = tokenizer_manager.model_config.vocab_size
    bad = next((t for t in input_ids or () if not 0 <= t < vocab_size), None)
    if bad is not None:
        raise ValueError(f"prompt token id {bad} is outside the vocabulary [0, {vocab_size})")
    top = obj.top_logprobs_num
    if isinstance(top, int) and not 0 <= top <= vocab_size:
        raise ValueError(f"top_logprobs_num (logprobs / top_logprobs) {top} must be in [0, {vocab_size}]")
    return None
