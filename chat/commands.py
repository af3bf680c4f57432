"""Slash commands (PROTOCOL.md 9): the one parser of a body that starts with ``/``.

services.message_post_many() (every door that posts: the socket's group commit, the REST
post, and any other caller) and services.message_edit() run every valid body through
parse(); nothing else reads commands. What a body becomes:

- plain text (no leading ``/``): stored and rendered as typed;
- ``//text``: the message ``/text`` (the first slash escapes the second);
- ``/me waves``: stored as typed (``/me waves``, so an edit shows it as a ``/me``), its html
  the rendered ``waves`` in italics (``<p><em>waves</em></p>``);
- ``/shrug [text]``: the message ``text ¯\\_(ツ)_/¯``, its backslash and underscores escaped
  in the stored Markdown so the html shows the shrug;
- ``/topic <text>`` and ``/help``: an Action, run by the posting service, that stores no
  message (the door answers with a ``command`` frame instead of an ack);
- any other ``/word``: invalid, with the list of commands in the detail.

An edit goes through the same parser (``editing=True``): ``/me`` stays or becomes a /me,
``//`` escapes, ``/shrug`` appends the shrug; ``/topic`` and ``/help`` cannot be an edit.

Nothing here touches the database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import protocol
from .protocol import ChatError

# The shrug as Markdown: "\\" is a backslash, "\_" an underscore that starts no emphasis.
SHRUG_MARKDOWN = "¯\\\\\\_(ツ)\\_/¯"
SHRUG = "¯\\_(ツ)_/¯"  # what the html shows

# name → (usage, what it does), in the order /help and the invalid detail list them.
COMMANDS = {
    "me": ("/me <text>", "post <text> as an action, in italics"),
    "shrug": ("/shrug [text]", "post [text] followed by " + SHRUG),
    "topic": ("/topic <text>", "set the room's topic (owners and moderators; /topic alone clears it)"),
    "help": ("/help", "list the commands (only you see it)"),
}
# Commands that store no message: run by the posting service, answered with a `command` frame.
ACTIONS = frozenset({"topic", "help"})

_COMMAND = re.compile(r"/(\S*)(?:\s+([\s\S]*))?")


@dataclass(frozen=True)
class Text:
    """A message to store: ``body`` is MESSAGE.body, ``markdown`` what its html is rendered
    from, in italics when ``emote`` (a /me)."""

    body: str
    markdown: str
    emote: bool = False


@dataclass(frozen=True)
class Action:
    """A command that stores no message: ``name`` is in ACTIONS, ``arg`` its trimmed text."""

    name: str
    arg: str


@dataclass(frozen=True)
class CommandReply:
    """What a door answers to an Action: the `command` frame (REST: the same JSON object)."""

    room: str
    text: str
    client_id: str


def command_list() -> str:
    """The commands, one usage per line (the /help text and the invalid detail use it)."""
    return "\n".join(f"{usage}: {what}" for usage, what in COMMANDS.values())


def help_text() -> str:
    return f"Commands:\n{command_list()}\nStart a message with // to post text beginning with /."


def parse(body: str, *, editing: bool = False) -> Text | Action:
    """Return what the valid (trimmed) ``body`` asks for, or raise invalid: an unknown
    command, a /me without text, or (``editing``) a command that stores nothing."""
    if not body.startswith("/"):
        return Text(body, body)
    if body.startswith("//"):
        return Text(body[1:], body[1:])
    match = _COMMAND.fullmatch(body)
    name, arg = match[1].lower(), (match[2] or "").strip()
    if name not in COMMANDS:
        raise ChatError(
            protocol.INVALID,
            f"Unknown command /{match[1][:40]}. The commands are:\n{command_list()}\n"
            "Start with // to post text beginning with /.",
        )
    if name == "me":
        if not arg:
            raise ChatError(protocol.INVALID, "/me needs text: /me waves.")
        return Text(body, arg, emote=True)
    if name == "shrug":
        shrug = f"{arg} {SHRUG_MARKDOWN}" if arg else SHRUG_MARKDOWN
        return Text(shrug, shrug)
    if editing:
        raise ChatError(protocol.INVALID, f"/{name} posts no message, so it cannot be an edit.")
    return Action(name, arg)
