"""chat/formatting.py: a body's Markdown rendered to the allowlisted html of PROTOCOL.md 6."""

import re
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat import formatting
from chat.formatting import mentioned_usernames, parse_markdown, render_markdown, sanitize_html

REL = "nofollow noopener noreferrer"
# The contract, written out here rather than imported, so widening the module's allowlist fails.
TAGS = {"p", "br", "strong", "em", "s", "code", "pre", "blockquote", "ul", "ol", "li", "a", "span"}
ATTRIBUTES = {"a": {"href", "rel", "target"}, "ol": {"start"}, "span": {"class", "data-user"}}
SCHEMES = ("http://", "https://", "mailto:")


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def handle_comment(self, data):
        self.elements.append(("!--", {}))


def parse(html: str) -> _Collect:
    collector = _Collect()
    collector.feed(html)
    collector.close()
    return collector


def assert_allowlisted(html: str) -> None:
    """Every element and attribute of ``html`` is one PROTOCOL.md 6 allows, with safe values."""
    for tag, attrs in parse(html).elements:
        assert tag in TAGS, (tag, html)
        assert set(attrs) <= ATTRIBUTES.get(tag, set()), (tag, attrs, html)
        if tag == "a":
            assert attrs.get("rel") == REL and attrs.get("target") == "_blank", html
            assert attrs.get("href") is None or attrs["href"].lower().startswith(SCHEMES), html
        if tag == "span":
            assert attrs.get("class") == "mention", html


def full_pipeline(body: str) -> str:
    """The html of ``body`` through markdown-it and nh3, with no shortcut."""
    md = formatting._md
    return sanitize_html(md.renderer.render(md.parse(body, {}), md.options, {})).rstrip("\n")


def text_of(html: str) -> str:
    return "".join(parse(html).text)


def links(html: str) -> list[dict]:
    return [attrs for tag, attrs in parse(html).elements if tag == "a"]


HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<IMG SRC=javascript:alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    "<svg/onload=alert(1)>",
    "<iframe src=https://evil.example></iframe>",
    "<style>body{display:none}</style>",
    "<!-- comment --> after",
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](java\tscript:alert(1))",
    "[x](javascript&#58;alert(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[x](vbscript:msgbox(1))",
    "[x](file:///etc/passwd)",
    "[x](/relative/path)",
    "[x](//evil.example/)",
    '[x](https://ok.example/" onmouseover="alert(1))',
    '[x](https://ok.example "title" onclick=alert(1))',
    "<javascript:alert(1)>",
    "<data:text/html,<script>alert(1)</script>>",
    "![x](javascript:alert(1))",
    "![x](https://img.example/x.png)",
    "[x][ref]\n\n[ref]: javascript:alert(1)",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&#60;img src=x onerror=alert(1)&#62;",
    "`<script>alert(1)</script>`",
    "```\n<script>alert(1)</script>\n```",
    "    <img src=x onerror=alert(1)>",
    "> <img src=x onerror=alert(1)>",
    "- <b onclick=alert(1)>x</b>",
    "@<b>bold</b> @<script>",
    "javascript:alert(1)",
    "http://a.example/<script>",
    '<span class="mention" data-user="x" onclick="alert(1)">@x</span>',
]


@pytest.mark.parametrize("body", HOSTILE)
def test_hostile_bodies_give_only_allowlisted_html(body):
    html = render_markdown(body, mentions={"b", "x"})
    assert_allowlisted(html)


@pytest.mark.parametrize(
    "body",
    ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "<b>bold</b>", "<!-- c -->"],
)
def test_raw_html_is_shown_as_text(body):
    html = render_markdown(body)
    assert parse(html).elements == [("p", {})]
    assert text_of(html) == body


@pytest.mark.parametrize(
    "body",
    [
        "[x](javascript:alert(1))",
        "[x](data:text/html,hi)",
        "[x](/relative)",
        "[x](//evil.example/)",
        "<javascript:alert(1)>",
        "ftp://files.example/f",
        "![x](javascript:alert(1))",
    ],
)
def test_links_other_than_http_https_mailto_stay_text(body):
    html = render_markdown(body)
    assert links(html) == []
    assert body.lstrip("!<").rstrip(">") in text_of(html)


def test_markdown_link_gets_rel_and_target():
    html = render_markdown("[docs](https://docs.example/a?b=1&c=2)")
    assert parse(html).elements == [
        ("p", {}),
        ("a", {"href": "https://docs.example/a?b=1&c=2", "rel": REL, "target": "_blank"}),
    ]
    assert text_of(html) == "docs"


def test_bare_url_is_linkified_with_rel_and_target():
    html = render_markdown("see https://example.com/path and www.example.org")
    assert [a["href"] for a in links(html)] == ["https://example.com/path", "http://www.example.org"]
    assert all(a["rel"] == REL and a["target"] == "_blank" for a in links(html))
    assert text_of(html) == "see https://example.com/path and www.example.org"


@pytest.mark.parametrize("body", ["[mail me](mailto:ann@example.com)", "<ann@example.com>", "ann@example.com"])
def test_mailto_links_are_kept(body):
    assert [a["href"] for a in links(render_markdown(body))] == ["mailto:ann@example.com"]


def test_image_syntax_becomes_a_link_not_an_image():
    html = render_markdown("![cat](https://img.example/cat.png)")
    assert "<img" not in html
    assert links(html)[0]["href"] == "https://img.example/cat.png"
    assert text_of(html) == "!cat"


@pytest.mark.parametrize("body", ["# Big", "###### small", "Title\n=====", "Title\n-----"])
def test_headings_are_no_larger_than_a_paragraph(body):
    html = render_markdown(body)
    assert not re.search(r"<h\d", html)
    assert html.startswith("<p>")


def test_emphasis_strong_strikethrough_and_inline_code():
    html = render_markdown("*em* **strong** ~~gone~~ `a < b`")
    assert html == "<p><em>em</em> <strong>strong</strong> <s>gone</s> <code>a &lt; b</code></p>"


def test_lists_and_quotes():
    html = render_markdown("- a\n- b\n\n3. three\n4. four\n\n> quoted\n> > nested")
    tags = [tag for tag, _ in parse(html).elements]
    assert tags.count("ul") == 1 and tags.count("ol") == 1 and tags.count("li") == 4
    assert tags.count("blockquote") == 2
    assert ("ol", {"start": "3"}) in parse(html).elements


def test_a_single_newline_is_a_line_break():
    assert render_markdown("one\ntwo") == "<p>one<br>\ntwo</p>"


def test_fenced_code_stays_literal_and_drops_the_language():
    body = "```python\n**not bold** <b>x</b> @bob https://x.example\n```"
    html = render_markdown(body, mentions={"bob"})
    assert html == (
        "<pre><code>**not bold** &lt;b&gt;x&lt;/b&gt; @bob https://x.example\n</code></pre>"
    )


def test_indented_code_stays_literal():
    assert render_markdown("    *x* @bob", mentions={"bob"}) == "<pre><code>*x* @bob\n</code></pre>"


def test_known_mentions_render_as_spans():
    html = render_markdown("hi @bob and @carol.", mentions={"bob", "carol"})
    assert html == (
        '<p>hi <span class="mention" data-user="bob">@bob</span> and '
        '<span class="mention" data-user="carol">@carol</span>.</p>'
    )


def test_mentions_accept_a_predicate():
    html = render_markdown("@bob @eve", mentions=lambda name: name == "bob")
    assert html == '<p><span class="mention" data-user="bob">@bob</span> @eve</p>'


@pytest.mark.parametrize(
    "body",
    [
        "`@bob`",
        "```\n@bob\n```",
        "[@bob](https://x.example)",
        "https://x.example/@bob",
        "<https://x.example/@bob>",
        "bob@example.com",
        "x@bob",
        "\\@bob",
        "@bobby",
    ],
)
def test_mentions_never_inside_code_links_or_words(body):
    html = render_markdown(body, mentions={"bob"})
    assert "mention" not in html
    assert "bob" in text_of(html)


def test_unknown_names_and_no_mentions_argument_stay_text():
    assert render_markdown("@bob") == "<p>@bob</p>"
    assert render_markdown("@bob", mentions={"carol"}) == "<p>@bob</p>"


def test_mentioned_usernames_skips_code_and_links_and_keeps_first_use_order():
    body = "@carol `@ann` [@dan](https://x.example) @bob, @carol @room\n```\n@eve\n```"
    assert mentioned_usernames(body) == ["carol", "bob", "room"]


def test_parsed_body_gives_mentions_and_html_from_one_parse():
    parsed = parse_markdown("hey @bob @zed")
    assert parsed.mentions == ["bob", "zed"]
    assert parsed.html(mentions={"bob"}) == render_markdown("hey @bob @zed", mentions={"bob"})


def test_entities_are_decoded_as_text_not_markup():
    html = render_markdown("&lt;b&gt; &amp; &copy; &#0;")
    assert parse(html).elements == [("p", {})]
    assert text_of(html) == "<b> & \u00a9 \ufffd"


def test_nul_and_lone_surrogates_do_not_break_rendering():
    html = render_markdown("a\x00b \ud800 c")
    assert text_of(html) == "a\ufffdb \ufffd c"


def test_empty_body_renders_empty():
    assert render_markdown("") == ""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "body",
    [
        "*" * 10_000,
        "[" * 10_000,
        "`" * 4000,
        "`[" * 2000,
        "[](" * 1333,
        "![" * 2000,
        "*a" * 2000,
        "_a **" * 800,
        "~~a" * 1333,
        ">" * 4000,
        "- " * 2000,
        "&#" * 2000,
        "<a" * 2000,
        "**_[`" * 1000,
        "*" * 2000 + "a" + "*" * 2000,
        "https://a.example " * 220,
        "@a " * 1333,
    ],
    ids=lambda body: f"{body[:6]!r}x{len(body)}",
)
def test_pathological_bodies_render_in_bounded_time(body):
    """A hang would trip the timeout; the output stays allowlisted and keeps the text."""
    html = render_markdown(body, mentions={"a"})
    assert_allowlisted(html)
    assert html


def test_sanitizer_alone_enforces_the_allowlist():
    """The second stage catches what a renderer bug might let through."""
    dirty = (
        '<h1>big</h1><img src=x onerror=alert(1)><script>alert(1)</script>'
        '<a href="javascript:alert(1)" onclick="x()">j</a><a href="/rel">r</a>'
        '<a href="https://ok.example" rel="opener" target="_top">ok</a>'
        '<span class="mention evil" style="color:red" data-user="bob">@bob</span>'
        '<code class="language-x">c</code><!-- c -->'
    )
    html = sanitize_html(dirty)
    assert_allowlisted(html)
    assert "alert" not in html and "<h1" not in html and "evil" not in html
    assert [a.get("href") for a in links(html)] == [None, None, "https://ok.example"]
    assert text_of(html) == "bigjrok@bobc"


# Words hypothesis generates that legitimately leave the text: entity names (&copy; is ©),
# a fence's info string (the language, dropped by design) and ordered-list numbers (markers).
_ENTITY = re.compile(r"&#?\w+;")
_LIST_NUMBER = re.compile(r"\d{1,9}[.)](?!\S)")
_FENCE_INFO = re.compile(r"^ {0,3}(?:`{3,}|~{3,})[^\n]*", re.MULTILINE)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=300)
       | st.text(alphabet="*_~`[]()<>!#@-+>\\&;:/. \nabc01", max_size=300))
def test_any_body_gives_allowlisted_html_containing_its_words(body):
    html = render_markdown(body, mentions={"a", "b"})
    assert_allowlisted(html)
    visible = text_of(html)
    kept = _LIST_NUMBER.sub(" ", _FENCE_INFO.sub(" ", _ENTITY.sub(" ", body.replace("\x00", " "))))
    for word in re.findall(r"[^\W_]+", kept):
        assert word in visible, (word, body, html)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="aZé0٣ ,?'!.:;()\"-~\u00a0\u2003", max_size=40))
def test_plain_lines_skip_the_parser_with_the_same_html(body):
    """The shortcut for markup-free lines gives exactly what the full pipeline gives."""
    assert render_markdown(body) == full_pipeline(body)


def full_pipeline_with(body: str, mentions: set[str]) -> str:
    md = formatting._md
    return sanitize_html(md.renderer.render(md.parse(body, {}), md.options, {"mentions": mentions})).rstrip("\n")


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="aZé0٣ ,?'!.:;()\"-~@", max_size=40) | st.from_regex(r"[a-z]{1,6}( [a-z]{1,4})* @[a-zé0.-]{1,6}[ ,.!]?"))
def test_plain_lines_with_mentions_skip_the_parser_with_the_same_html_and_mentions(body):
    """The shortcut for markup-free lines holding ``@name`` renders and finds what the parser does."""
    names = set(re.findall(r"@([\w.+-]+)", body)) | {"a", "Z"}
    names |= {name.rstrip(".-") for name in names}
    parsed = parse_markdown(body)
    reference = parse_markdown(body + "\n\n*x*") if parsed._tokens is None else parsed  # forced through the parser
    assert parsed.html(mentions=names) == full_pipeline_with(body, names)
    assert parsed.mentions == reference.mentions


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="ax.:/@-_ \nhtpsmilo", max_size=40)
       | st.from_regex(r"[a-z]{0,4}(https?://|mailto:|www\.)?[a-z]{1,5}(@[a-z]{1,4})?\.[a-z]{2,4}[a-z./:]{0,5}"))
def test_the_link_pretest_shortcut_changes_no_output(body):
    """The cheap pre-filter before linkify-it's pretest only skips text that has no link."""
    reference = formatting._build()
    del reference.linkify.pretest  # back to linkify-it's own
    tokens = formatting._md.parse(body, {})
    assert formatting._md.renderer.render(tokens, formatting._md.options, {}) == reference.render(body)
