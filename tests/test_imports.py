"""The chat package has no import circle and no import of a chat module inside a function.

The graph is built by grimp in a fresh interpreter, so the modules this test process has already
imported cannot hide an import. An import of a.b.c counts as one of package a.b too (Python runs
a/b/__init__.py first), so a circle through a package's ``__init__`` is found. grimp records the
line of every import; an import of a chat module that is indented (inside a function or method)
is reported as a circle-dodge.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Not a circle dodge: Django's documented place to connect signal receivers is AppConfig.ready().
ALLOWED_INSIDE = {"chat.apps:9 imports chat.signals"}

_GRAPH = r"""
import json, sys
import grimp
graph = grimp.build_graph("chat", include_external_packages=False)
edges = {}
indented = []
for importer in sorted(graph.modules):
    for imported in sorted(graph.find_modules_directly_imported_by(importer)):
        for d in graph.get_import_details(importer=importer, imported=imported):
            edges.setdefault(importer, set()).add(imported)
            # Importing a.b.c runs a/b/__init__.py first: an edge to each enclosing package,
            # unless the importer is inside it (its own package is being imported already).
            parts = imported.split(".")
            for n in range(2, len(parts)):
                package = ".".join(parts[:n])
                if not (importer + ".").startswith(package + "."):
                    edges[importer].add(package)
            if _indented(d):
                indented.append(f"{importer}:{d['line_number']} imports {imported}")
print(json.dumps({"edges": {k: sorted(v) for k, v in edges.items()}, "indented": sorted(set(indented))}))
"""

_PRELUDE = r"""
import linecache, pathlib
def _indented(d):
    base = pathlib.Path(*d["importer"].split("."))
    path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    return linecache.getline(str(path), d["line_number"])[:1] in (" ", "\t")
"""


def _graph() -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _PRELUDE + _GRAPH], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)


def _cycle(edges: dict[str, list[str]]) -> list[str] | None:
    """One import circle as a path of module names (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in edges.get(node, []):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_realtime_presence_selectors_form_no_circle():
    """The circle of issue 13 (realtime -> selectors -> services -> presence -> realtime) is gone."""
    edges = _graph()["edges"]
    assert not any(m.startswith("chat.realtime") for m in edges.get("chat.realtime.presence", []))
    assert not any(m.startswith(("chat.services", "chat.realtime")) for m in edges.get("chat.selectors", []))
    outside = {k: [m for m in v if not m.startswith("chat.services.")] for k, v in edges.items()}
    outside = {k: v for k, v in outside.items() if not k.startswith("chat.services.")}
    found = _cycle(outside)
    assert found is None, "import circle: " + " -> ".join(found)


def test_cycle_finder_names_a_circle():
    assert _cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert _cycle({"a": ["b"], "b": []}) is None


def test_no_import_circle_in_chat():
    found = _cycle(_graph()["edges"])
    assert found is None, "import circle: " + " -> ".join(found)


def test_no_chat_import_inside_a_function():
    indented = [i for i in _graph()["indented"] if i not in ALLOWED_INSIDE]
    assert indented == [], "imports of chat modules inside functions:\n" + "\n".join(indented)
