"""chat/emoji.py: a reaction's emoji is exactly one emoji, in one spelling (PROTOCOL.md 6)."""

import pytest

from chat import protocol
from chat.emoji import validate_emoji
from chat.protocol import ChatError


@pytest.mark.parametrize(
    "value",
    [
        "👍",
        "👍🏽",  # skin tone
        "👨\u200d👩\u200d👧",  # ZWJ family
        "🧑🏽\u200d🚀",  # skin tone inside a ZWJ sequence
        "🇫🇷",  # flag
        "1\ufe0f\u20e3",  # keycap 1️⃣
        "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # Scotland, a tag sequence
        "❤\ufe0f",
        "🫠",
    ],
)
def test_one_emoji_is_accepted_unchanged(value):
    assert validate_emoji(value) == value


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("❤", "❤\ufe0f"),  # unqualified
        ("1\u20e3", "1\ufe0f\u20e3"),  # keycap without the selector
        ("©", "©\ufe0f"),
        ("👍\ufe0f", "👍"),  # a selector after an emoji that takes none
        ("👍\ufe0e", "👍"),
    ],
)
def test_other_spellings_become_the_fully_qualified_one(value, canonical):
    """Two spellings of one emoji must not count as two reactions."""
    assert validate_emoji(value) == canonical


@pytest.mark.parametrize(
    "value",
    [
        "ab",
        "a",
        "1",
        "#",
        "👍👍",
        "🇫🇷🇫🇷",
        "👍🏽🏽",
        "👍\u200d👍",  # a ZWJ sequence Unicode does not list
        "🏽",  # a lone skin-tone modifier
        "🇫",  # half a flag
        "\u200d",
        "\ufe0f",
        "",
        " 👍",
        "👍 ",
        "\x00",
        "👍\x00",
        "\ud83d",  # a lone surrogate
        "\ud83d\udc4d",  # 👍 as a surrogate pair, which Python does not join
        "👍" * 100,
        None,
        42,
        ["👍"],
        {"emoji": "👍"},
    ],
)
def test_anything_but_one_emoji_is_invalid(value):
    with pytest.raises(ChatError) as raised:
        validate_emoji(value)
    assert raised.value.code == protocol.INVALID
