from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from auth_svc.app import create_app


@pytest.fixture
async def auth_client(make_settings, redis) -> AsyncIterator[TestClient]:  # type: ignore[no-untyped-def]
    """auth_svc served over a real socket, on this test's database and Redis."""
    app = create_app(make_settings(service_name="auth_svc"))
    async with TestClient(TestServer(app)) as client:
        yield client


RegisterFn = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def register(auth_client: TestClient) -> RegisterFn:
    """Register a user with random defaults; returns the 201 body plus the password used."""

    async def make(**overrides: Any) -> dict[str, Any]:
        name = f"user_{uuid.uuid4().hex[:10]}"
        body = {"username": name, "email": f"{name}@example.com", "password": "correct horse battery"}
        body.update(overrides)
        response = await auth_client.post("/auth/register", json=body)
        assert response.status == 201, await response.text()
        return {**await response.json(), "password": body["password"]}

    return make
