"""Demo feed for notices (PROTOCOL.md 9): random-walk prices of KEYS symbols, RATE updates per
second in all, published into a room over the REST API.

    python scripts/price_feeder.py --room prices --token <key>                # 200 keys, 50 updates/s
    python scripts/price_feeder.py --room prices --username ann --password …  # gets a token first
    python scripts/price_feeder.py --url http://127.0.0.1:8000 --keys 20 --rate 5 --room prices --token <key>

The caller must own or moderate the room (or be one of its bots). Open /rooms/<room>/ in a
browser: the live table above the messages follows the feed. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import urllib.error
import urllib.request


def call(url: str, body: dict, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Token {token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--room", required=True)
    parser.add_argument("--token")
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0, help="updates per second, over all keys")
    parser.add_argument("--seconds", type=float, default=0, help="stop after this long (0: run until Ctrl+C)")
    args = parser.parse_args(argv)
    base = args.url.rstrip("/")
    token = args.token
    if not token:
        if not (args.username and args.password):
            parser.error("give --token, or --username and --password")
        token = call(f"{base}/api/v1/auth/token/", {"username": args.username, "password": args.password})["token"]
    symbols = [f"SYM{i:03d}" for i in range(args.keys)]
    prices = {s: round(random.uniform(10, 500), 2) for s in symbols}
    url = f"{base}/api/v1/rooms/{args.room}/notices/"
    start, k, errors = time.monotonic(), 0, 0
    try:
        while not args.seconds or time.monotonic() - start < args.seconds:
            due = start + k / args.rate
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            symbol = symbols[k % len(symbols)] if k < len(symbols) else random.choice(symbols)
            prices[symbol] = max(0.01, round(prices[symbol] * (1 + random.gauss(0, 0.002)), 2))
            price = prices[symbol]
            try:
                call(url, {"key": symbol, "data": {"bid": price, "ask": round(price + 0.01, 2)}}, token)
            except urllib.error.HTTPError as exc:
                errors += 1
                print(f"{symbol}: {exc.code} {exc.read().decode()[:200]}", file=sys.stderr)
                if exc.code in (401, 403, 404):
                    return 1
            k += 1
            if k % max(1, int(args.rate * 10)) == 0:
                print(f"{k} updates, {k / (time.monotonic() - start):.1f}/s, {errors} errors", flush=True)
    except KeyboardInterrupt:
        pass
    print(f"{k} updates in {time.monotonic() - start:.1f} s, {errors} errors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
