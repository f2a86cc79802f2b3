"""The chat message roles LongCat-Flash's chat templates render.

The official templates (and the ones ``testing/tiny.py`` generates after them) are if/elif chains over these
roles with no else branch: a message with any other role ("wizard") silently vanishes from the prompt
and the request is answered as if it had not been sent. Both plugins refuse such a request with a 400
naming the role instead (``longcat_vllm.renderer``, ``longcat_sglang.request_guard``).
"""

from collections.abc import Iterable

CHAT_ROLES = ("system", "user", "assistant", "tool")


def unknown_role_error(roles: Iterable[str], accepted: Iterable[str] = CHAT_ROLES) -> str | None:
    """The error message for the first role not in ``accepted``, or None if every role is known."""
    accepted = tuple(accepted)
    bad = next((r for r in roles if r not in accepted), None)
    if bad is None:
        return None
    return f"unknown chat message role {bad!r}: LongCat-Flash's chat template renders only {', '.join(accepted)}"
