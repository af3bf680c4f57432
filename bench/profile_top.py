"""Summarize a py-spy raw (collapsed stacks) profile: per thread, where its samples are.

    .venv/bin/python bench/profile_top.py /tmp/chat-bench/profile-postgres-fanout.txt [--top 25] [--match chat/]

For each thread: its share of all samples, then the functions with the largest inclusive
share (the function anywhere on the stack) and self share (the innermost frame). The server
runs under ``py-spy record --idle``, so samples cover wall time: a thread's share that is
not under a working frame is time spent waiting (the event loop in select(), the database
thread on its queue).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def short(frame: str) -> str:
    m = FRAME.match(frame)
    if not m:
        return frame
    path = m["file"]
    for marker in ("site-packages/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{m['func']} ({path})"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("path")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--match", default="", help="only functions whose file contains this")
    args = p.parse_args()

    inclusive: dict[str, Counter] = defaultdict(Counter)
    leaf: dict[str, Counter] = defaultdict(Counter)
    per_thread: Counter = Counter()
    total = 0
    with open(args.path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            frames = stack.split(";")
            thread = re.sub(r"\(\d+\)", "", frames[0]).strip()
            frames = [short(fr) for fr in frames[1:]]
            total += n
            per_thread[thread] += n
            for fr in set(frames):
                inclusive[thread][fr] += n
            if frames:
                leaf[thread][frames[-1]] += n
    print(f"{total} samples")
    for thread, n in per_thread.most_common():
        if n < total * 0.01:
            continue
        print(f"\n== {thread}: {n} samples ({n / total:.0%} of all)")
        print("  inclusive (share of this thread's samples)")
        shown = [(fr, c) for fr, c in inclusive[thread].most_common() if args.match in fr][: args.top]
        for fr, c in shown:
            print(f"    {c / n:6.1%}  {fr}")
        print("  self")
        for fr, c in leaf[thread].most_common(args.top):
            print(f"    {c / n:6.1%}  {fr}")


if __name__ == "__main__":
    main()
