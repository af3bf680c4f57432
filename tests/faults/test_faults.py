"""Issue 7's faults on 2 Daphne workers behind nginx, with their own Redis and a cuttable
path to PostgreSQL: after each fault, every acked message reached every member of its room
exactly once, in seq order, and nothing else did."""

import pytest

from tests.faults.faults import FAULTS, HANG_TIMEOUT, TOPOLOGY, run, table
from tests.faults.load import Member

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes, pytest.mark.faults]


def fault(name):
    return pytest.mark.fault(name)


@pytest.fixture
def members(db):
    from tests.faults.faults import make_members

    return make_members()


async def _run(name, members, tmp_path, **cluster_args):
    title, scenario = FAULTS[name]
    cluster_args.setdefault("redis", TOPOLOGY.get(name, "single"))
    row = await run(title, scenario, members, tmp_path, **cluster_args)
    assert row.passed(), "\n" + table([row])
    return row


@fault("redis")
@pytest.mark.timeout(120)
async def test_a_redis_restart_loses_nothing(members, tmp_path):
    await _run("redis", members, tmp_path)


@fault("database")
@pytest.mark.timeout(150)
async def test_a_database_outage_answers_unavailable_and_loses_nothing(members, tmp_path):
    await _run("database", members, tmp_path)


@fault("hang")
@pytest.mark.timeout(120)
async def test_a_database_that_hangs_answers_unavailable_and_resumes(members, tmp_path):
    await _run("hang", members, tmp_path, extra_env={"CHAT_DB_TIMEOUT": str(HANG_TIMEOUT)})


@fault("kill")
@pytest.mark.timeout(120)
async def test_clients_of_a_killed_worker_resume_on_the_other(members, tmp_path):
    await _run("kill", members, tmp_path)


@fault("sigterm")
@pytest.mark.timeout(120)
async def test_sigterm_closes_sockets_with_1001_and_clients_resume(members, tmp_path):
    await _run("sigterm", members, tmp_path)


@pytest.fixture
def members_with_a_slow_one(members, db):
    from tests.factories import make_token, make_user

    room = members[0].room
    for m in members:
        if m.room == room:
            m.rate, m.body_size = 25.0, 2000
    slow = make_user("slow")
    return [*members, Member(slow.username, make_token(slow), room, rate=0, small_rcvbuf=True)]


@fault("slow")
@pytest.mark.timeout(240)
async def test_a_client_that_stops_reading_is_closed_and_resumes(members_with_a_slow_one, tmp_path):
    await _run("slow", members_with_a_slow_one, tmp_path)


@fault("churn")
@pytest.mark.timeout(240)
async def test_connect_churn_leaves_no_ghosts(members, tmp_path):
    await _run("churn", members, tmp_path)


@fault("shard")
@pytest.mark.timeout(120)
async def test_one_of_two_redis_shards_down_loses_nothing(members, tmp_path):
    await _run("shard", members, tmp_path)


@fault("sentinel")
@pytest.mark.timeout(120)
async def test_a_sentinel_failover_loses_nothing(members, tmp_path):
    await _run("sentinel", members, tmp_path)


@pytest.fixture
def storm_members(db):
    from tests.faults.faults import STORM_MEMBERS, STORM_ROOMS, make_members

    # One message every 100 s per member: 50 messages/s, 2,500 deliveries/s in all.
    return make_members(members=STORM_MEMBERS, rooms=STORM_ROOMS, rate=0.01, own_addresses=True)


@fault("storm")
@pytest.mark.timeout(600)
async def test_a_reconnect_storm_brings_every_client_back_complete(storm_members, tmp_path):
    # Clients back off as the page's do (socket.js: equal jitter, the ceiling doubling from
    # 0.5 s to 10 s) and, like a browser, wait for a slow handshake (30 s) instead of giving
    # up and coming back; the load generator, one Python process, keeps at most 200
    # handshakes in flight.
    await _run("storm", storm_members, tmp_path, join_timeout=180,
               load_args={"first_backoff": 0.5, "max_backoff": 10.0, "handshakes": 200, "open_timeout": 30.0})
