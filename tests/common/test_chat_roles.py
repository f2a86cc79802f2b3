from longcat_common.chat_roles import CHAT_ROLES, unknown_role_error


def test_known_roles_pass_and_the_first_unknown_one_is_named():
    assert unknown_role_error(CHAT_ROLES) is None
    error = unknown_role_error(["system", "wizard", "elf"])
    assert "'wizard'" in error and "elf" not in error and "system, user, assistant, tool" in error
    assert unknown_role_error(["developer"], (*CHAT_ROLES, "developer")) is None
