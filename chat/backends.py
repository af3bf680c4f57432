"""Django's ModelBackend, refusing site-banned users (PROTOCOL.md 5).

While a site ban is in force the user cannot log in (login form, `POST /api/v1/auth/token/`)
and a session of theirs no longer authenticates, whatever session engine keeps it. The
login form then answers as it does for an inactive account: wrong credentials.
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

from . import rules


class ChatModelBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None and rules.is_site_banned(user):
            # PermissionDenied, not None: Django then tries no other backend.
            raise PermissionDenied("This account is banned.")
        return user

    def get_user(self, user_id):
        # One query: the ban and the bot flag come with the user (reverse one-to-one joins).
        user = get_user_model()._default_manager.select_related("site_ban", "chat_bot").filter(pk=user_id).first()
        if user is None or not self.user_can_authenticate(user):
            return None
        ban = getattr(user, "site_ban", None)
        if ban is not None and ban.in_force():
            return None
        return user
