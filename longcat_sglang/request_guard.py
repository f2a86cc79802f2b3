"""Request checks SGLang 0.5.23 lacks, run where it validates each request (``TokenizerManager.
_validate_one_request``), so that a bad request is a 400 naming the field instead of an exception in the
scheduler that takes the whole server down:

* prompt token ids outside [0, vocab_size): the scheduler's embedding lookup raises ``IndexError`` (a
  device-side assert on GPU) and the server exits. SGLang checks ``token_ids_logprob`` but not the prompt.
* ``top_logprobs_num`` (``logprobs`` / ``top_logprobs`` in the OpenAI API) above the vocabulary or
  negative: the scheduler's top-k raises ``selected index k out of range`` and the server exits.
* ``n`` (parallel samples): a huge one (100000) fans out into that many queued requests until the
  scheduler's watchdog kills the server, and below 1 it is served as 1. Limited to OpenAI's range
  [1, 128] where SGLang expands it (``GenerateReqInput._handle_parallel_sampling``).

And two requests SGLang answers as if they were fine:

* a chat message role LongCat-Flash's chat template does not render (longcat_common.chat_roles): the
  template would drop the message. Checked where SGLang validates a chat request.
* an unknown model name: SGLang serves any name with its one model; a 404 as from vLLM and OpenAI
  (``served-name:adapter`` for LoRA and SGLang's "default", sent when the field is left out, still pass).

Every check applies only where longcat_sglang serves the model (serving.py): other models get SGLang's own
answers, crashes included.
"""

from sglang.srt.entrypoints.openai.protocol import DEFAULT_MODEL_NAME
from sglang.srt.managers.io_struct import GenerateReqInput

from longcat_common.chat_roles import unknown_role_error
from longcat_sglang.serving import serves, serves_this_process


def check_request(tokenizer_manager, obj, input_ids, *args, **kwargs):
    """A BEFORE hook on ``TokenizerManager._validate_one_request(self, obj, input_ids)``."""
    if not isinstance(obj, GenerateReqInput) or not serves(tokenizer_manager.model_config.hf_config):
        return None
    vocab_size = tokenizer_manager.model_config.vocab_size
    bad = next((t for t in input_ids or () if not 0 <= t < vocab_size), None)
    if bad is not None:
        raise ValueError(f"prompt token id {bad} is outside the vocabulary [0, {vocab_size})")
    top = obj.top_logprobs_num
    if isinstance(top, int) and not 0 <= top <= vocab_size:
        raise ValueError(f"top_logprobs_num (logprobs / top_logprobs) {top} must be in [0, {vocab_size}]")
    return None


MAX_N = 128  # OpenAI's limit on n


def check_n(obj, *args, **kwargs):
    """A BEFORE hook on ``GenerateReqInput._handle_parallel_sampling(self)``."""
    if not serves_this_process():
        return None
    params = obj.sampling_params
    for p in [params] if isinstance(params, dict) else params or ():
        n = p.get("n", 1)
        if not isinstance(n, int) or not 1 <= n <= MAX_N:
            raise ValueError(f"n (parallel samples) {n} must be in [1, {MAX_N}]")
    return None


def check_chat_roles(error, serving_chat, request, *args, **kwargs):
    """An AFTER hook on ``OpenAIServingChat._validate_request(self, request) -> error message | None``."""
    if error is not None or not serves(serving_chat.tokenizer_manager.model_config.hf_config):
        return None
    return unknown_role_error(m.role for m in request.messages)


def check_model_name(handle_request, serving, request, *args, **kwargs):
    """An AROUND hook on ``OpenAIServingBase.handle_request(self, request, raw_request)`` (a coroutine)."""
    model = getattr(request, "model", None)
    served = serving.tokenizer_manager.served_model_name
    if (model and model != DEFAULT_MODEL_NAME and serving._parse_model_parameter(model)[0] != served
            and serves(serving.tokenizer_manager.model_config.hf_config)):
        return _not_found(serving, f"The model `{model}` does not exist: this server serves `{served}`.")
    return handle_request(serving, request, *args, **kwargs)


async def _not_found(serving, message: str):
    return serving.create_error_response(message, err_type="NotFoundError", status_code=404)
