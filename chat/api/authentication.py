"""REST authentication classes (REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"])."""

from __future__ import annotations

from rest_framework import authentication, exceptions


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication; a key that is not ASCII letters and digits (a NUL, say,
    which PostgreSQL refuses in a query) is a bad token (401), never a query."""

    def authenticate_credentials(self, key):
        if not (0 < len(key) <= 64 and key.isascii() and key.isalnum()):
            raise exceptions.AuthenticationFailed("Invalid token.")
        # DRF's own lookup, with the bot flag (PROTOCOL.md 9) joined: MESSAGE reads it.
        token = self.get_model().objects.select_related("user__chat_bot").filter(key=key).first()
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return token.user, token
