"""A password change revokes the user's API tokens.

Django tells every entry of `AUTH_PASSWORD_VALIDATORS` when a user's password has been changed
and saved (`password_changed`), whichever way it was changed: the admin's forms, `changepassword`,
`set_password()` and `save()` anywhere. Listed there, this class hears of every change without a
signal of its own, and checks nothing about the password itself.
"""

from __future__ import annotations


class RevokeApiTokensOnPasswordChange:
    """Not a rule for passwords: the hook that revokes a user's API tokens when theirs changes."""

    def validate(self, password: str, user=None) -> None:
        return None

    def password_changed(self, password: str, user=None) -> None:
        from tenants.services import user_tokens_revoke

        if user is not None and user.pk is not None:
            user_tokens_revoke(user=user)

    def get_help_text(self) -> str:
        return "Changing the password revokes the user's API tokens."
