"""Request-rate limits of the REST API (posting has its own, shared with the socket:
services.check_post_rate)."""

from rest_framework.permissions import SAFE_METHODS
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


class ReadRateThrottle(UserRateThrottle):
    """Reads (GET, HEAD, OPTIONS) per user, at REST_FRAMEWORK's "read" rate (CHAT_READ_RATE)."""

    scope = "read"

    def allow_request(self, request, view) -> bool:
        """Return True if the request should be allowed, False otherwise."""
        if request.method not in SAFE_METHODS:
            return True
        return super().allow_request(request, view)


class LoginRateThrottle(AnonRateThrottle):
    """Token requests (password checks) per client address, at the "login" rate (CHAT_LOGIN_RATE)."""

    scope = "login"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
