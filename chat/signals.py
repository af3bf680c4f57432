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
            user_id=user.pk, event=protocol.close_event(code=protocol.CLOSE_UNAUTHENTICATED, session_key=session_key)
        )


# --- password change and deactivation (moderation, PROTOCOL.md 5) -------------------------

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import transaction  # noqa: E402
from django.db.models.signals import post_save, pre_save  # noqa: E402

_CREDENTIAL_FIELDS = {"password", "is_active"}


@receiver(pre_save, sender=get_user_model())
def _note_password_change_or_deactivation(sender, instance, update_fields=None, **kwargs):
    """Remember on the instance whether this save changes the password or deactivates."""
    instance._chat_end_sockets = False
    if instance.pk is None or (update_fields is not None and not _CREDENTIAL_FIELDS & set(update_fields)):
        return
    # check_password() upgrading the hash of the same password saves update_fields=["password"]
    # after clearing _password; set_password() leaves the new raw password there until save.
    if update_fields is not None and set(update_fields) == {"password"} and instance._password is None:
        return
    old = sender._default_manager.filter(pk=instance.pk).values("password", "is_active").first()
    if old is not None:
        instance._chat_end_sockets = old["password"] != instance.password or (old["is_active"] and not instance.is_active)


@receiver(post_save, sender=get_user_model())
def close_sockets_on_password_change_or_deactivation(sender, instance, created, **kwargs):
    """A new password or a deactivated account ends every socket of the user with 4401."""
    if created or not getattr(instance, "_chat_end_sockets", False):
        return
    instance._chat_end_sockets = False
    user_id = instance.pk
    event = protocol.close_event(code=protocol.CLOSE_UNAUTHENTICATED)
    transaction.on_commit(lambda: realtime.user_event_publish(user_id=user_id, event=event))


# --- migrations run without CHAT_DB_TIMEOUT -------------------------------------------------

from django.db import connections  # noqa: E402
from django.db.models.signals import pre_migrate  # noqa: E402


@receiver(pre_migrate)
def _migrate_without_timeouts(sender, using="default", **kwargs):
    """A migration may run one long statement (an index on a big table): the statement and
    lock timeouts of CHAT_DB_TIMEOUT (chatproject/settings.py) are for requests, not for it."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")
        cursor.execute("SET lock_timeout = 0")
    connection.connection.deadline = None  # chat/pgdeadline.py
