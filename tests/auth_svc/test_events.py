"""What auth_svc publishes, through the outbox, and what it never publishes."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from auth_svc.app import create_app
from common.core.envelope import ENVELOPE_FIELDS, Event
from common.core.settings import Settings
from common.http.app import runtime_of
from common.redis.client import make_redis
from common.swarm.embedded import EmbeddedRedis
from tests.helpers import eventually


async def _published(redis, stream: str, n: int) -> list[Event] | None:  # type: ignore[no-untyped-def]
    entries = await redis.xrange(stream)
    return [Event.from_fields(fields) for _, fields in entries] if len(entries) >= n else None


async def _outbox_rows(auth_client: TestClient) -> int:
    return await runtime_of(auth_client.server.app).db().fetchval("SELECT count(*) FROM outbox")


async def _outbox_drained(auth_client: TestClient) -> bool:
    """Every committed event has left: whatever the streams hold now is all there will be."""
    return await _outbox_rows(auth_client) == 0


async def test_registering_publishes_one_new_user_and_one_registration_notice(auth_client, register, redis):
    user = (await register(username="carol"))["user"]
    [new_user] = await eventually(lambda: _published(redis, "events:newUser", 1), what="newUser")
    [notice] = await eventually(lambda: _published(redis, "events:newNotif", 1), what="newNotif")
    [(_, raw)] = await redis.xrange("events:newUser")
    assert set(raw) == set(ENVELOPE_FIELDS)
    assert "password" not in raw["data"] and "hash" not in raw["data"]
    assert new_user.producer == "auth_svc"
    assert new_user.actor_id == user["id"]
    assert new_user.data == {**user, "version": 1}
    assert notice.data["type"] == "registration"
    assert notice.data["recipients"] == [user["id"]]
    assert notice.data["actor"] == {"id": user["id"], "username": "carol"}
    assert new_user.correlation_id == notice.correlation_id  # both caused by the same request
    await eventually(lambda: _outbox_drained(auth_client), what="nothing left to publish")
    assert await redis.xlen("events:newUser") == 1
    assert await redis.xlen("events:newNotif") == 1


async def test_the_correlation_id_is_the_request_id(auth_client, redis):
    await auth_client.post(
        "/auth/register",
        json={"username": "dave", "email": "dave@example.com", "password": "long enough"},
        headers={"X-Request-ID": "req-dave-1"},
    )
    [event] = await eventually(lambda: _published(redis, "events:newUser", 1), what="newUser")
    assert event.correlation_id == "req-dave-1"


async def test_a_rejected_registration_publishes_nothing(auth_client, register, redis):
    await register(username="erin", email="erin@example.com")
    await eventually(lambda: _published(redis, "events:newUser", 1), what="first newUser")
    body = {"username": "ERIN", "email": "erin2@example.com", "password": "long enough"}
    assert (await auth_client.post("/auth/register", json=body)).status == 409
    await eventually(lambda: _outbox_drained(auth_client), what="nothing left to publish")
    assert await redis.xlen("events:newUser") == 1
    assert await redis.xlen("events:newNotif") == 1


async def test_updates_publish_update_user_with_a_higher_version(auth_client, register, redis):
    user = await register()
    await auth_client.patch(
        "/users/me", json={"full_name": "Renamed"}, headers={"Authorization": f"Bearer {user['access_token']}"}
    )
    [update] = await eventually(lambda: _published(redis, "events:updateUser", 1), what="updateUser")
    assert update.data["full_name"] == "Renamed"
    assert update.data["version"] == 2


async def test_registration_succeeds_while_redis_is_down_and_its_events_follow_when_it_is_back(make_settings, tmp_path):
    server = EmbeddedRedis(tmp_path / "redis").start()
    app = create_app(make_settings(service_name="auth_svc", redis_url=server.url))
    client = make_redis(Settings(redis_url=server.url))
    try:
        async with TestClient(TestServer(app)) as auth_client:
            server.stop()
            response = await auth_client.post(
                "/auth/register", json={"username": "frank", "email": "frank@example.com", "password": "long enough"}
            )
            assert response.status == 201
            assert await _outbox_rows(auth_client) == 2  # committed with the user, waiting for Redis
            server.start()
            events = await eventually(
                lambda: _published(client, "events:newUser", 1), timeout=10, what="newUser after Redis is back"
            )
            await eventually(lambda: _published(client, "events:newNotif", 1), what="newNotif after Redis is back")
            assert events[0].data["username"] == "frank"
            await eventually(lambda: _outbox_drained(auth_client), what="nothing left to publish")
            assert await client.xlen("events:newUser") == 1
    finally:
        await client.aclose()
        server.stop()
