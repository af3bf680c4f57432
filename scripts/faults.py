#!/usr/bin/env python3
"""Run every fault scenario of issue 7 and print the fault table.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/chat .venv/bin/python scripts/faults.py [names…]

Each scenario starts its own cluster on spare loopback ports (tests/faults/cluster.py, on the
process harness harness/) — its own redis-server, a TCP proxy in front of PostgreSQL that it
can cut, 2 Daphne workers (deploy/worker) and nginx (deploy/nginx/) — runs 20 clients in 4 rooms at a steady rate, injects one fault, and checks
that every acked message reached every member exactly once, in seq order. It runs the
pytest tests in tests/faults/ with CHAT_FAULTS=all (the CI runs a subset of them on every
`./test`); names (redis, database, hang, kill, sigterm, slow, churn, shard, sentinel, storm) pick some. Needs nginx
(`apt-get install nginx-light`), redis-server and PostgreSQL; takes about 4 minutes.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    env = dict(os.environ)
    if not env.get("DATABASE_URL", "").startswith("postgres"):
        print("scripts/faults.py needs PostgreSQL: set DATABASE_URL=postgres://…", file=sys.stderr)
        return 2
    env["CHAT_FAULTS"] = ",".join(sys.argv[1:]) or "all"
    env.setdefault("CHAT_TEST_DB_NAME", "chat_faults")
    env["CHAT_REQUIRE_NGINX"] = "1"
    python = ROOT / ".venv" / "bin" / "python"
    command = [str(python if python.exists() else sys.executable), "-m", "pytest", "tests/faults", "-q", "-p", "no:randomly", "-rN"]
    return subprocess.call(command, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
