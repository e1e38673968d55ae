"""project_svc and comment_svc side by side in this process, on their own databases and one Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from comment_svc.app import create_app as create_comment_app
from common.core.envelope import Event
from common.http.app import runtime_of
from project_svc.app import create_app as create_project_app
from tests.helpers import access_token, bearer, eventually, publish, user_record


class Pair:
    """The two services under test and a way to call them as a given user."""

    def __init__(self, projects: TestClient, comments: TestClient, keys_dir: Any) -> None:
        self.projects = projects
        self.comments = comments
        self.keys_dir = keys_dir

    async def call(self, client: TestClient, who: dict, method: str, path: str, json: Any = None) -> Any:
        response = await client.request(method, path, json=json, headers=bearer(access_token(self.keys_dir, who)))
        assert response.status < 300, f"{method} {path} → {response.status} {await response.text()}"
        return await response.json() if response.status != 204 else None

    def pool(self, client: TestClient) -> asyncpg.Pool:
        return runtime_of(client.server.app).db()


@pytest.fixture
async def pair(servers, make_settings, make_database, redis) -> AsyncIterator[Pair]:  # type: ignore[no-untyped-def]
    project_app = create_project_app(make_settings(service_name="project_svc", database_url=await make_database()))
    comment_app = create_comment_app(make_settings(service_name="comment_svc", database_url=await make_database()))
    async with TestClient(TestServer(project_app)) as projects, TestClient(TestServer(comment_app)) as comments:
        yield Pair(projects, comments, servers.keys_dir)


async def workload(pair: Pair, redis) -> list[dict]:  # type: ignore[no-untyped-def]
    """Projects, members, cards, updates, status changes, kicks, re-adds and deletes, from four users."""
    users = [user_record(f"user{i}") for i in range(4)]
    await publish(redis, *(Event.new("newUser", u, producer="auth_svc") for u in users))
    owner, ann, ben, cid = users

    async def replicated() -> bool:
        return await pair.pool(pair.projects).fetchval("SELECT count(*) FROM users") == len(users)

    await eventually(replicated, what="users replicated into project_svc")
    call, P = pair.call, pair.projects
    apollo = await call(P, owner, "POST", "/projects", {"title": "Apollo"})
    gemini = await call(P, owner, "POST", "/projects", {"title": "Gemini"})
    doomed = await call(P, owner, "POST", "/projects", {"title": "Doomed"})
    for project, members in ((apollo, (ann, ben)), (gemini, (ann, cid)), (doomed, (ben,))):
        for member in members:
            await call(P, owner, "POST", f"/projects/{project['id']}/members", {"user_id": member["id"]})
    cards = []
    for i, (project, creator, assignee) in enumerate(
        [
            (apollo, owner, ann),
            (apollo, ann, ben),
            (apollo, ben, None),
            (gemini, cid, ann),
            (gemini, owner, cid),
            (doomed, ben, ben),
            (doomed, owner, None),
        ]
    ):
        body = {"title": f"card {i}", "assignee_id": assignee["id"] if assignee else None}
        cards.append(await call(P, creator, "POST", f"/projects/{project['id']}/cards", body))
    await call(P, ann, "PATCH", f"/cards/{cards[0]['id']}", {"status": "in_progress", "title": "card 0 started"})
    await call(P, ben, "PATCH", f"/cards/{cards[0]['id']}", {"status": "review"})
    await call(P, cid, "PATCH", f"/cards/{cards[3]['id']}", {"status": "done", "assignee_id": cid["id"]})
    await call(P, owner, "DELETE", f"/cards/{cards[4]['id']}")
    await call(P, ann, "PATCH", f"/cards/{cards[1]['id']}", {"priority": "urgent"})
    await call(P, owner, "DELETE", f"/projects/{apollo['id']}/members/{ben['id']}")  # unassigns card 1
    await call(P, owner, "POST", f"/projects/{apollo['id']}/members", {"user_id": ben["id"]})
    await call(P, owner, "DELETE", f"/projects/{gemini['id']}/members/{cid['id']}")
    await call(P, owner, "PATCH", f"/projects/{gemini['id']}", {"title": "Gemini II"})
    await call(P, owner, "DELETE", f"/projects/{doomed['id']}")
    return users
