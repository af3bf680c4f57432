"""Auth events that must reach open sockets."""

from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

from . import protocol, realtime


@receiver(user_logged_out)
def close_sockets_on_logout(sender, request, user, **kwargs):
    """Logging out closes that session's sockets with 4401 (PROTOCOL.md 2)."""
    session_key = getattr(request, "session", None) and request.session.session_key
    if user is not None and session_key:
        realtime.user_event_publish(
            user_id=user.pk, event={"close": protocol.CLOSE_UNAUTHENTICATED, "session_key": session_key}
        )
