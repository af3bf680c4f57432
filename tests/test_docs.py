"""The documentation a reader of a clone sees stands on its own and stays in step with the code.

- No page, template, script or API description sends the reader to ``PROTOCOL.md`` or
  ``shared/``, which a clone does not have; docs/protocol.md is the contract.
- Every relative link of README.md and docs/*.md reaches an existing file and heading.
- Every ``CHAT_*`` setting read from the environment is documented.
- docs/protocol.md names every error code and close code the server uses.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]
# What a reader sees besides the pages: the page's templates and scripts.
SHOWN = [*PAGES, *(ROOT / "templates").rglob("*.html"), *(ROOT / "chat").rglob("*.html"), *(ROOT / "chat" / "static").rglob("*.js")]
FOREIGN = re.compile(r"PROTOCOL\.md|\.\./shared|\bshared/")

_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercased, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for heading in _HEADING.findall(_FENCE.sub("", path.read_text())):
        slug = _slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _links(path: Path) -> list[str]:
    return _LINK.findall(_FENCE.sub("", path.read_text()))


@pytest.mark.parametrize("path", SHOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_a_reader_sees_points_outside_the_repository(path):
    found = [line.strip() for line in path.read_text().splitlines() if FOREIGN.search(line)]
    assert found == []


def test_api_schema_descriptions_point_inside_the_repository(db):
    from drf_spectacular.generators import SchemaGenerator

    schema = json.dumps(SchemaGenerator().get_schema(request=None, public=True))
    assert "docs/protocol.md" in schema
    assert not FOREIGN.search(schema)


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_reach_a_file_and_a_heading(path):
    broken = []
    for target in _links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target}: no such heading")
    assert broken == []


def test_every_chat_setting_is_documented():
    settings = (ROOT / "chatproject" / "settings.py").read_text()
    names = set(re.findall(r"""env(?:\.\w+)?\(\s*["'](CHAT_[A-Z0-9_]+)["']""", settings)) - {"CHAT_TEST_DB_NAME"}
    text = "\n".join(page.read_text() for page in PAGES)
    assert names, "no CHAT_* settings found: the pattern no longer matches settings.py"
    assert sorted(name for name in names if name not in text) == []


def test_protocol_page_names_every_error_code_and_close_code():
    from chat import protocol
    from chat.api.errors import STATUS_OF_CODE

    page = (ROOT / "docs" / "protocol.md").read_text()
    codes = {*STATUS_OF_CODE, protocol.UNAUTHENTICATED}
    close_codes = {value for name, value in vars(protocol).items() if name.startswith("CLOSE_") and isinstance(value, int)}
    assert close_codes, "no CLOSE_* constants found in chat.protocol"
    assert sorted(code for code in codes if f"`{code}`" not in page) == []
    assert sorted(code for code in close_codes if not re.search(rf"^\| {code} \|", page, re.M)) == []
