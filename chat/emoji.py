"""The emoji of a reaction (PROTOCOL.md 6): one emoji, in one canonical spelling.

The `emoji` library's data is Unicode's emoji-test.txt: every entry is one emoji sequence
(a single grapheme), skin tones, ZWJ sequences, flags, tag sequences and keycaps included. A
value is accepted when it is exactly one such entry, so text, two emoji, a lone skin-tone
modifier or a sequence Unicode does not list are refused without a hand-written range check.
"""

from __future__ import annotations

from typing import Any

import emoji as emoji_data

from chat import protocol
from chat.protocol import ChatError

# The longest entry in Unicode's data is 10 code points (a tag-sequence flag); a longer value
# cannot be one emoji, and refusing it first keeps the lookups cheap.
MAX_EMOJI_LENGTH = 16
_VARIATION_SELECTORS = ("\ufe0e", "\ufe0f")
_COMPONENT = emoji_data.STATUS["component"]
_FULLY_QUALIFIED = emoji_data.STATUS["fully_qualified"]


def validate_emoji(value: Any) -> str:
    """Return ``value`` as one fully-qualified emoji, or raise ChatError(`invalid`).

    Spellings of one emoji become one string, so the (message, user, emoji) constraint counts
    them once: ``❤`` and ``❤️`` both return ``❤️``, ``1⃣`` returns ``1️⃣``, and a variation
    selector after an emoji that takes none (``👍\\ufe0f``) is dropped.
    """
    if not isinstance(value, str) or not value or len(value) > MAX_EMOJI_LENGTH:
        raise ChatError(protocol.INVALID, "`emoji` must be a single emoji.")
    candidate = value
    data = emoji_data.EMOJI_DATA.get(candidate)
    if data is None and candidate.endswith(_VARIATION_SELECTORS):
        candidate = candidate[:-1]
        data = emoji_data.EMOJI_DATA.get(candidate)
    if data is None or data["status"] == _COMPONENT:
        raise ChatError(protocol.INVALID, "`emoji` must be a single emoji.")
    if data["status"] != _FULLY_QUALIFIED:
        qualified = emoji_data.emojize(data["en"], language="en")
        entry = emoji_data.EMOJI_DATA.get(qualified)
        if entry is not None and entry["status"] == _FULLY_QUALIFIED:
            candidate = qualified
    return candidate
