"""Message formatting (PROTOCOL.md 6): a body's Markdown rendered to the allowlisted `html`.

The pipeline is markdown-it-py in CommonMark mode with strikethrough and linkify, then nh3
(Ammonia) with an explicit allowlist. The renderer never emits raw HTML, images or headings,
and accepts only http, https and mailto links; the sanitizer enforces the same again, so a bug
in either stage alone does not reach a browser.

Choices beyond the protocol's text:

- A single newline inside a paragraph is a line break (`<br>`), as in every chat product;
  strict CommonMark would join the lines with a space.
- ``![alt](url)`` is not an image: the image rule is off, so it reads as ``!`` followed by
  an ordinary link to ``url`` (subject to the same scheme rule).
- ``# x`` and setext underlines stay paragraph text (the heading rules are off); ``---`` stays
  text too (no `<hr>`), and link reference definitions stay visible text instead of vanishing.
- A fenced block's info string (the language) is dropped: ``<pre><code>`` carries no class.
- Mentions match ``@name`` where ``name`` starts and ends with a letter, digit or ``_`` and may
  contain ``.``, ``+`` and ``-`` in between; the ``@`` must not follow a letter, digit or one of
  ``_.+-@`` (so ``ann@example.com`` is not a mention), and a backslash before it (``\\@bob``)
  keeps it text. Names match exactly (Django usernames are case-sensitive).

Nothing here touches the database; the caller says which names exist.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.token import Token

# Which names are users the room can see: a collection of usernames or a predicate.
Mentions = Collection[str] | Callable[[str], bool] | None

LINK_REL = "nofollow noopener noreferrer"
URL_SCHEMES = frozenset({"http", "https", "mailto"})

# The allowlist of nh3, the last word on what reaches a client. `rel` and `target` are not
# listed: nh3 sets them on every link itself (link_rel, set_tag_attribute_values), replacing
# whatever the renderer wrote.
ALLOWED_TAGS = frozenset(
    {"p", "br", "strong", "em", "s", "code", "pre", "blockquote", "ul", "ol", "li", "a", "span"}
)
ALLOWED_ATTRIBUTES = {"a": {"href"}, "ol": {"start"}, "span": {"data-user"}}
ALLOWED_CLASSES = {"span": {"mention"}}

_SAFE_URL = re.compile(r"(?:https?://|mailto:)[^\s]", re.IGNORECASE)
_MENTION = re.compile(r"(?<![\w.+\-@])@(\w(?:[\w.+\-]*\w)?)")
# Text with none of these cannot hold a link linkify would make and _validate_link accept:
# a scheme (http://, https://, mailto:) or a dot before a TLD (bare domains and emails).
# linkify-it's own pretest is one large Unicode regex costing more than the rest of a short
# message's parse, so this cheap necessary condition runs first.
_MAY_LINK = re.compile(r"://|mailto:|\.[^\W\d_]", re.IGNORECASE)
_SURROGATE = re.compile("[\ud800-\udfff]")
# A body that no Markdown rule can touch: it starts with a letter (no list, quote or code
# indent), holds only letters, digits, spaces and inert punctuation (no markup, entity,
# escape, `@`, `/` or newline), and has no `.` before a letter or digit (which linkify could
# read as a domain). Its html is one paragraph of the body as typed, so the common chat line
# skips the parser; tests/test_formatting.py checks the output is the full pipeline's.
_PLAIN = re.compile(r"[^\W\d_](?:[^\W_]|[ ,?'!:;()\"-]|\.(?![^\W_]))*")
# The same with ``@`` allowed after the first character: no Markdown rule reads ``@`` either,
# so such a line parses to one text token and its mentions are _MENTION's matches in it (the
# common "thanks @ann" line skips the parser too; the same test checks it).
_PLAIN_AT = re.compile(r"[^\W\d_](?:[^\W_]|[ ,?'!:;()\"@-]|\.(?![^\W_]))*")


def _validate_link(url: str) -> bool:
    """Return True for an http, https or mailto URL (markdown-it passes it normalized)."""
    return _SAFE_URL.match(url) is not None


def _mention_rule(state: Any) -> None:
    """Core rule: split `@name` out of text tokens into `mention` tokens.

    Runs after linkify and before text_join, so link text (markdown links, autolinks and
    linkified URLs) is skipped by depth, code is never a `text` token, and a backslash-escaped
    ``@`` is still a separate `text_special` token that the pattern does not see.
    """
    for block in state.tokens:
        if block.type != "inline" or "@" not in block.content or not block.children:
            continue
        children: list[Token] = []
        link_depth = 0
        for token in block.children:
            if token.type == "link_open":
                link_depth += 1
            elif token.type == "link_close":
                link_depth -= 1
            if token.type != "text" or link_depth or "@" not in token.content:
                children.append(token)
                continue
            text, last = token.content, 0
            for match in _MENTION.finditer(text):
                if match.start() > last:
                    children.append(_text_token(text[last : match.start()], token.level))
                mention = Token("mention", "span", 0)
                mention.content = match.group(0)
                mention.meta = {"user": match.group(1)}
                mention.level = token.level
                children.append(mention)
                last = match.end()
            if last == 0:
                children.append(token)
            elif last < len(text):
                children.append(_text_token(text[last:], token.level))
        block.children = children


def _text_token(content: str, level: int) -> Token:
    token = Token("text", "", 0)
    token.content = content
    token.level = level
    return token


def _render_mention(self: Any, tokens: list[Token], idx: int, options: Any, env: dict) -> str:
    token = tokens[idx]
    name = token.meta["user"]
    known = env.get("mentions")
    if known is not None and (known(name) if callable(known) else name in known):
        escaped = escapeHtml(name)
        return f'<span class="mention" data-user="{escaped}">@{escaped}</span>'
    return escapeHtml(token.content)


def _render_link_open(self: Any, tokens: list[Token], idx: int, options: Any, env: dict) -> str:
    token = tokens[idx]
    token.attrs["rel"] = LINK_REL
    token.attrs["target"] = "_blank"
    return self.renderToken(tokens, idx, options, env)


def _render_fence(self: Any, tokens: list[Token], idx: int, options: Any, env: dict) -> str:
    return f"<pre><code>{escapeHtml(tokens[idx].content)}</code></pre>\n"


def _build() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": True, "breaks": True, "xhtmlOut": False})
    md.enable(["strikethrough", "linkify"])
    md.disable(["html_block", "html_inline", "heading", "lheading", "hr", "reference", "image"])
    md.validateLink = _validate_link  # type: ignore[method-assign]
    pretest = md.linkify.pretest
    md.linkify.pretest = lambda text: _MAY_LINK.search(text) is not None and pretest(text)
    md.core.ruler.before("text_join", "mention", _mention_rule)
    md.add_render_rule("mention", _render_mention)
    md.add_render_rule("link_open", _render_link_open)
    md.add_render_rule("fence", _render_fence)
    # Compile the rule chains now, not lazily in whichever threads render first.
    md.render("*a* [b](https://c.example) @d `e`", {"mentions": None})
    return md


# Built once: configuring markdown-it costs far more than rendering a short message.
_md = _build()


# Built once: nh3.clean() would rebuild the sanitizer from these sets on every call, which
# costs more than sanitizing a short message.
_cleaner = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
    allowed_classes={tag: set(names) for tag, names in ALLOWED_CLASSES.items()},
    url_schemes=set(URL_SCHEMES),
    url_relative="deny",
    link_rel=LINK_REL,
    set_tag_attribute_values={"a": {"target": "_blank"}},
    strip_comments=True,
)


def sanitize_html(html: str) -> str:
    """Return ``html`` reduced to the allowlist (tags, attributes, classes and URL schemes)."""
    return _cleaner.clean(html)


class ParsedBody:
    """A body parsed once: its mention candidates now, its html once the caller knows who exists.

    On the write path this saves a second parse: read ``mentions``, look the names up, then
    call ``html(mentions=...)``.
    """

    __slots__ = ("_tokens", "_plain", "_spans", "mentions")

    def __init__(self, tokens: list[Token] | None, plain: str = "", spans: list[re.Match] | None = None):
        self._tokens = tokens
        self._plain = plain
        self._spans = spans
        names: dict[str, None] = {}
        for match in spans or ():
            names.setdefault(match.group(1), None)
        for block in tokens or ():
            for token in block.children or ():
                if token.type == "mention":
                    names.setdefault(token.meta["user"], None)
        #: The ``@name`` candidates outside code and links, unique, in order of first use.
        self.mentions: list[str] = list(names)

    def html(self, *, mentions: Mentions = None) -> str:
        """Return the sanitized html; mentions render as spans only for names in ``mentions``."""
        if self._tokens is None:
            if self._spans is None:
                return self._plain
            return _plain_with_mentions(self._plain, self._spans, mentions)
        env = {"mentions": mentions}
        return sanitize_html(_md.renderer.render(self._tokens, _md.options, env)).rstrip("\n")


def _plain_with_mentions(body: str, spans: list[re.Match], known: Mentions) -> str:
    """The html of a _PLAIN_AT line: what _render_mention and nh3 make of its one text token."""
    parts, last = ["<p>"], 0
    for match in spans:
        name = match.group(1)
        if known is not None and (known(name) if callable(known) else name in known):
            parts.append(body[last : match.start()])
            parts.append(f'<span class="mention" data-user="{name}">@{name}</span>')
            last = match.end()
    parts.append(body[last:])
    parts.append("</p>")
    return "".join(parts)


def parse_markdown(body: str, *, emote: bool = False) -> ParsedBody:
    """Parse ``body`` (any string: NUL and lone surrogates become U+FFFD); ``emote`` (a /me,
    chat.commands) sets the text of every paragraph and list item in italics (code blocks
    stay as they are)."""
    if body[-1:] not in ("", " ") and _PLAIN.fullmatch(body):
        return ParsedBody(None, f"<p><em>{body}</em></p>" if emote else f"<p>{body}</p>")
    if not emote and "@" in body and body[-1:] != " " and _PLAIN_AT.fullmatch(body):
        return ParsedBody(None, body, list(_MENTION.finditer(body)))
    if _SURROGATE.search(body):
        body = _SURROGATE.sub("\ufffd", body)
    tokens = _md.parse(body, {})
    if emote:
        for block in tokens:
            if block.type == "inline" and block.children:
                block.children = [Token("em_open", "em", 1), *block.children, Token("em_close", "em", -1)]
    return ParsedBody(tokens)


def render_markdown(body: str, *, mentions: Mentions = None) -> str:
    """Return the sanitized html of ``body`` (PROTOCOL.md 6).

    ``mentions`` says which ``@name`` are users the room can see: a collection of usernames or
    a predicate; other names, and all of them when it is None, stay plain text.
    """
    return parse_markdown(body).html(mentions=mentions)


def mentioned_usernames(body: str) -> list[str]:
    """Return the names written as ``@name`` in ``body`` outside code and links (PROTOCOL.md 7).

    Unique, in order of first use, whether or not such users exist; ``room`` is returned like
    any name (whether ``@room`` is honoured is the caller's rule).
    """
    if "@" not in body:
        return []
    return parse_markdown(body).mentions
