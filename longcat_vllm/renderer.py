"""vLLM's chat renderer, refusing message roles LongCat-Flash's chat template does not render.

vLLM accepts any role string (its custom-role message type) and hands it to the template, whose if/elif
chain drops the message without a word (longcat_common.chat_roles). Registered as the renderer of
vLLM's default ``hf`` mode; models other than LongCat-Flash are rendered exactly as before.
"""

from vllm.exceptions import VLLMValidationError
from vllm.renderers.hf import HfRenderer

from longcat_common.chat_roles import CHAT_ROLES, unknown_role_error
from longcat_common.config import ARCHITECTURES

# vLLM itself renders "developer" as "system" when the template does not name it (renderers/hf.py)
ROLES = (*CHAT_ROLES, "developer")


class LongcatRenderer(HfRenderer):
    def _check_roles(self, messages) -> None:
        if self.model_config.architecture not in ARCHITECTURES:
            return
        roles = (m.get("role") if isinstance(m, dict) else getattr(m, "role", None) for m in messages)
        error = unknown_role_error(roles, ROLES)
        if error:
            raise VLLMValidationError(error, parameter="messages")

    def render_messages(self, messages, params):
        self._check_roles(messages)
        return super().render_messages(messages, params)

    async def render_messages_async(self, messages, params):
        self._check_roles(messages)
        return await super().render_messages_async(messages, params)
