"""``REDIS_URL`` in its three forms, for the channel layer and for the project's own Redis use.

- ``redis://host:6379/0`` — one Redis server.
- ``redis://a:6379/0,redis://b:6379/0`` — shards: channels-redis spreads groups and channels
  over the hosts by consistent hashing; presence and typing state (``state_client``) live on
  the first host.
- ``redis+sentinel://s1:26379,s2:26379,s3:26379/mymaster/0`` — Redis Sentinel: every
  connection asks the sentinels for the current primary of ``mymaster`` (database 0), so a
  failover needs no restart.

Pure (no Django import): settings.py builds CHANNEL_LAYERS from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

SENTINEL_SCHEME = "redis+sentinel"


@dataclass(frozen=True)
class RedisUrl:
    shards: tuple[str, ...] = ()  # plain redis:// URLs
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = ""
    db: int = 0

    @property
    def sentinel(self) -> bool:
        return bool(self.sentinels)

    def layer_hosts(self, **options) -> list[dict]:
        """channels-redis ``hosts``: one entry per shard, or one Sentinel entry."""
        if self.sentinel:
            return [{"sentinels": list(self.sentinels), "master_name": self.master, "db": self.db, **options}]
        return [{"address": url, **options} for url in self.shards]

    def client(self, *, asyncio: bool = False, **options):
        """A redis-py client (``redis.asyncio`` with ``asyncio=True``) for state kept in Redis:
        the primary through the sentinels, or the first shard."""
        if asyncio:
            import redis.asyncio as redis_module
            from redis.asyncio.sentinel import Sentinel
        else:
            import redis as redis_module
            from redis.sentinel import Sentinel
        if self.sentinel:
            sentinel_options = {k: v for k, v in options.items() if k in ("socket_timeout", "socket_connect_timeout")}
            return Sentinel(list(self.sentinels), sentinel_kwargs=sentinel_options).master_for(
                self.master, db=self.db, **options
            )
        return redis_module.Redis.from_url(self.shards[0], **options)


def parse(url: str) -> RedisUrl:
    """``REDIS_URL`` → RedisUrl; ValueError with the reason for a malformed one."""
    url = url.strip()
    if not url:
        raise ValueError("REDIS_URL is empty")
    if url.startswith(SENTINEL_SCHEME + "://"):
        rest = url[len(SENTINEL_SCHEME) + 3:]
        hosts, _, path = rest.partition("/")
        parts = [p for p in path.split("/") if p]
        if not parts:
            raise ValueError("a Sentinel REDIS_URL needs the primary's name: redis+sentinel://host:port,…/<name>/<db>")
        master, db = parts[0], parts[1] if len(parts) > 1 else "0"
        if not db.isdigit():
            raise ValueError(f"the database in REDIS_URL must be a number, not {db!r}")
        sentinels = []
        for host in hosts.split(","):
            name, _, port = host.strip().rpartition(":")
            if not name or not port.isdigit():
                raise ValueError(f"a sentinel must be host:port, not {host!r}")
            sentinels.append((name.strip("[]"), int(port)))
        return RedisUrl(sentinels=tuple(sentinels), master=master, db=int(db))
    shards = tuple(u.strip() for u in url.split(",") if u.strip())
    for shard in shards:
        if urlsplit(shard).scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"REDIS_URL: {shard!r} is not a redis://, rediss:// or unix:// URL")
    return RedisUrl(shards=shards)
