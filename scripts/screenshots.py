#!/usr/bin/env python3
"""Take the README's screenshots again and write them to docs/screenshots/.

    .venv/bin/python scripts/screenshots.py [--out DIR]

Runs the browser tests that take them (tests/browser/test_screenshots.py: the rooms page, a
room, its thread panel, a phone at 390×844, the dark scheme; tests/browser/test_threads_page.py:
a live thread, reactions, formatted code) against a live server with a seeded conversation,
in Debian's Chromium, with CHAT_SCREENSHOTS_DIR pointing at docs/screenshots/ (or DIR). In
CI the same tests write to artifacts/screenshots/ and the checkout stays clean; commit the
pictures this script writes when the page's look changed. About 30 s.

Emoji in the page (the bell, the paperclip, reaction chips) need an emoji font, or Chromium
draws empty boxes: on Debian, apt-get install fonts-noto-color-emoji before taking them.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["tests/browser/test_screenshots.py", "tests/browser/test_threads_page.py"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="where to write (default: %(default)s)")
    args = parser.parse_args()
    env = dict(os.environ)
    env["CHAT_SCREENSHOTS_DIR"] = str(args.out.resolve())
    env["CHAT_REQUIRE_BROWSER"] = "1"  # no Chromium is a failure here, not a skip
    env.pop("DATABASE_URL", None)  # the browser tests run on the embedded defaults (SQLite)
    env.pop("REDIS_URL", None)
    python = ROOT / ".venv" / "bin" / "python"
    command = [str(python if python.exists() else sys.executable), "-m", "pytest", *MODULES, "-q", "-n", "0",
               "-p", "no:randomly"]
    status = subprocess.call(command, cwd=ROOT, env=env)
    if status == 0:
        for path in sorted(args.out.glob("*.png")):
            print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}  {path.stat().st_size:,} bytes")
    return status


if __name__ == "__main__":
    sys.exit(main())
