"""Reactions (PROTOCOL.md 6): add or remove one user's emoji on a message.

A change is decided under the room's lock with the caller's access read in the same
transaction (messages._message_locked), so a reaction cannot land on a message deleted in
between, and two identical reactions sent at once (two sockets, a double click) count once:
the second finds the first. A change that changes nothing announces nothing and takes no
seq; any other is one room event, `message.reacted`, with the message's full REACTIONS.
Reactions are not posts: CHAT_POST_RATE does not apply (the socket's frame budget does).
"""

from __future__ import annotations

from django.db import IntegrityError, transaction

from .. import protocol, rules, selectors
from ..emoji import validate_emoji
from ..models import Message, Reaction
from ..protocol import ChatError
from .messages import _message_locked, _next_seq, _record_event


def reaction_add(*, message_id: int, user, emoji, door: rules.Door = rules.Door.API) -> Message:
    """Add the user's ``emoji`` to the message; return the message with its reactions.

    Raise invalid for anything but one emoji, or for a 21st distinct emoji on the message;
    muted, room_locked; not_found for a deleted or invisible message.
    """
    return _react(message_id=message_id, user=user, emoji=emoji, door=door, add=True)


def reaction_remove(*, message_id: int, user, emoji, door: rules.Door = rules.Door.API) -> Message:
    """Remove the user's ``emoji`` from the message (if they had it); see reaction_add()."""
    return _react(message_id=message_id, user=user, emoji=emoji, door=door, add=False)


def _react(*, message_id: int, user, emoji, door: rules.Door, add: bool) -> Message:
    try:
        emoji = validate_emoji(emoji)
        refusal = None
    except ChatError as error:
        refusal = error  # judged after the permissions, as a body is
    with transaction.atomic():
        message, access = _message_locked(message_id=message_id, user=user, door=door)
        rules.check_react(access, message)
        if refusal is not None:
            raise refusal
        changed = _add(message, user, emoji) if add else _remove(message, user, emoji)
        selectors.reactions_attach([message])
        if changed:
            _record_event(message=message, kind=protocol.MESSAGE_REACTED, seq=_next_seq(message.room_id))
    return message


def _add(message: Message, user, emoji: str) -> bool:
    """Store the reaction unless the user has it; return whether it was stored."""
    if Reaction.objects.filter(message=message, user=user, emoji=emoji).exists():
        return False
    used = set(Reaction.objects.filter(message=message).values_list("emoji", flat=True).distinct())
    if emoji not in used and len(used) >= Reaction.MAX_EMOJI_PER_MESSAGE:
        raise ChatError(protocol.INVALID, f"A message has at most {Reaction.MAX_EMOJI_PER_MESSAGE} different emoji.")
    try:
        with transaction.atomic():
            Reaction.objects.create(message=message, user=user, emoji=emoji)
    except IntegrityError:  # the room's lock makes this unreachable; the constraint is the last word
        return False
    if emoji not in message.reaction_order:
        message.reaction_order = [e for e in message.reaction_order if e in used] + [emoji]
        message.save(update_fields=["reaction_order"])
    return True


def _remove(message: Message, user, emoji: str) -> bool:
    deleted, _ = Reaction.objects.filter(message=message, user=user, emoji=emoji).delete()
    if deleted and not Reaction.objects.filter(message=message, emoji=emoji).exists():
        # Its place goes with its last reaction: used again later, it comes last.
        message.reaction_order = [e for e in message.reaction_order if e != emoji]
        message.save(update_fields=["reaction_order"])
    return deleted > 0

