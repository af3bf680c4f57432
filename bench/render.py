"""Render cost per message on the write path (chat/formatting.py), with references in the same run.

For each kind of body it times, per message:

- render: render_markdown(body, mentions=…) — markdown-it-py parse and render, then nh3;
- nh3 on the full path: sanitize_html() of that body's rendered markup alone (a markup-free
  line skips both stages, see chat/formatting.py);
- html.escape(body): the cheapest possible "formatting", a floor;
- encode MESSAGE: protocol.encode() of a MESSAGE-shaped dict carrying body and html, the JSON
  work every stored message already pays once.

Realistic bodies are generated from a fixed seed (short chat lines, with a link, inline or
fenced code, mentions, emphasis and lists); the 4,000-character worst cases are the
pathological inputs of tests/test_formatting.py at the body limit. Times are CPU time of the
thread (time.thread_time_ns), so other processes on the machine do not inflate them. Compare the realistic rows
with the ~0.44 ms of server CPU per stored message measured before formatting existed.

Run:  .venv/bin/python bench/render.py [--messages 10000] [--worst 20] [--seed 1]
"""

from __future__ import annotations

import argparse
import html
import platform
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chat import protocol  # noqa: E402
from chat.formatting import _md, render_markdown, sanitize_html  # noqa: E402

WORDS = (
    "the a to and is it of for on in that this with you we deploy build test merge review lunch "
    "meeting today tomorrow thanks ok sure looks good ship it fixed broken again staging prod "
    "coffee standup ticket branch release rollback please check see docs later yes no maybe"
).split()
USERS = ["ann", "bob", "carol", "dan", "eve", "frank"]
KNOWN = frozenset(USERS)


def _sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def realistic(kind: str, rng: random.Random) -> str:
    """One body of ``kind``; the words vary so no cache could help."""
    if kind == "plain short":
        # Punctuation as typed; a smiley or an inner dot sends a line down the full parser.
        return _sentence(rng, 2, 14) + rng.choice(["", "", "", ".", "?", "!", " :)", "...", ", ok.so"])
    if kind == "bench/loadgen.py body":
        return f"~B{rng.randint(0, 9)}:{rng.randint(0, 99999)}:{rng.randint(10**15, 10**16)}~ lorem ipsum dolor sit amet, consectetur"
    if kind == "plain long (~600 chars)":
        return ". ".join(_sentence(rng, 8, 16) for _ in range(6))
    if kind == "with a link":
        return f"{_sentence(rng, 2, 8)} https://example.com/{rng.choice(WORDS)}/{rng.randint(1, 9999)} {_sentence(rng, 0, 5)}"
    if kind == "with inline code":
        return f"{_sentence(rng, 2, 8)} `{rng.choice(WORDS)}.{rng.choice(WORDS)}()` {_sentence(rng, 1, 6)}"
    if kind == "with a code block":
        code = "\n".join(f"    {rng.choice(WORDS)}({rng.randint(0, 99)})" for _ in range(rng.randint(2, 8)))
        return f"{_sentence(rng, 2, 8)}:\n```python\ndef f():\n{code}\n```"
    if kind == "with mentions":
        return f"@{rng.choice(USERS)} {_sentence(rng, 2, 8)} @{rng.choice(USERS)} {_sentence(rng, 0, 4)}"
    if kind == "emphasis and a list":
        items = "\n".join(f"- **{rng.choice(WORDS)}** {_sentence(rng, 1, 5)}" for _ in range(rng.randint(2, 5)))
        return f"_{_sentence(rng, 2, 5)}_ ~~{rng.choice(WORDS)}~~\n\n{items}"
    raise ValueError(kind)


# Share of each kind in the "realistic mix" row: mostly short plain lines, as in chat logs.
MIX = {
    "plain short": 55,
    "plain long (~600 chars)": 5,
    "with a link": 10,
    "with inline code": 8,
    "with a code block": 4,
    "with mentions": 12,
    "emphasis and a list": 6,
}

# Not in the mix: the body the fan-out and stored-message benchmarks send.
EXTRA = ["bench/loadgen.py body"]

WORST = {
    "4,000 '['": "[" * 4000,
    "4,000 '*'": "*" * 4000,
    "4,000 '`'": "`" * 4000,
    "4,000 '`['": "`[" * 2000,
    "4,000 '[]('": ("[](" * 1334)[:4000],
    "4,000 '!['": "![" * 2000,
    "4,000 '*a'": "*a" * 2000,
    "4,000 URLs": ("https://a.example " * 223)[:4000],
    "4,000 '@a '": ("@a " * 1334)[:4000],
}


def _time(func, arg) -> float:
    """CPU µs of ``func(arg)`` on this thread: the cost to the server, not to a shared machine's clock."""
    start = time.thread_time_ns()
    func(arg)
    return (time.thread_time_ns() - start) / 1000


def _payload(body: str, rendered: str) -> dict:
    return {
        "type": "message", "room": "general", "seq": 58,
        "message": {
            "id": 123, "room": "general", "seq": 58, "author": {"id": 7, "username": "ann", "bot": False},
            "body": body, "html": rendered, "client_id": "9b2c6a1e-6f0e-4c6b-9d8e-1f2a3b4c5d6e",
            "created_at": "2026-11-26T09:00:00.123456Z", "edited_at": None, "deleted": False,
            "reply_to": None, "reply_count": 0, "last_reply_at": None,
            "reactions": [], "mentions": [], "attachments": [],
        },
    }


def measure(bodies: list[str]) -> dict[str, list[float]]:
    """Per-message µs of each step over ``bodies``."""
    out: dict[str, list[float]] = {"render": [], "nh3": [], "escape": [], "encode": []}
    render = lambda body: render_markdown(body, mentions=KNOWN)  # noqa: E731
    for body in bodies:
        out["render"].append(_time(render, body))
        unsanitized = _md.renderer.render(_md.parse(body, {}), _md.options, {"mentions": KNOWN})
        out["nh3"].append(_time(sanitize_html, unsanitized))
        out["escape"].append(_time(html.escape, body))
        out["encode"].append(_time(protocol.encode, _payload(body, render(body))))
    return out


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000, help="realistic bodies in the mix")
    parser.add_argument("--worst", type=int, default=20, help="runs of each worst case")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    kinds = rng.choices(list(MIX), weights=list(MIX.values()), k=args.messages)
    bodies = [realistic(kind, rng) for kind in kinds]
    for body in bodies[:200]:  # warm caches and the allocator
        render_markdown(body, mentions=KNOWN)

    rows: list[tuple[str, int, float, dict[str, list[float]]]] = []
    mixed = measure(bodies)
    rows.append(("realistic mix", len(bodies), statistics.fmean(map(len, bodies)), mixed))
    for kind in MIX:
        index = [i for i, k in enumerate(kinds) if k == kind]
        picked = {name: [values[i] for i in index] for name, values in mixed.items()}
        rows.append((kind, len(index), statistics.fmean(len(bodies[i]) for i in index), picked))
    for kind in EXTRA:
        extra = [realistic(kind, rng) for _ in range(min(args.messages, 2000))]
        rows.append((kind, len(extra), statistics.fmean(map(len, extra)), measure(extra)))
    for name, body in WORST.items():
        rows.append((name, args.worst, len(body), measure([body] * args.worst)))

    print(f"# bench/render.py  python {platform.python_version()}  {platform.machine()}  "
          f"seed={args.seed}  (CPU µs per message)")
    print()
    print("| body | n | chars | render median | render p99 | nh3 on the full path (median) "
          "| html.escape median | encode MESSAGE median |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, count, chars, data in rows:
        print(
            f"| {name} | {count} | {chars:.0f} | {statistics.median(data['render']):.1f} "
            f"| {_p99(data['render']):.1f} | {statistics.median(data['nh3']):.1f} "
            f"| {statistics.median(data['escape']):.2f} | {statistics.median(data['encode']):.1f} |"
        )
    mean = statistics.fmean(mixed["render"])
    print()
    print(f"realistic mix: mean render {mean:.1f} µs = {mean / 440:.0%} of the ~440 µs of server CPU "
          f"per stored message before formatting")


if __name__ == "__main__":
    main()
