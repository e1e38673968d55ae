"""Fixtures of the API documentation tests: a gateway with every service configured."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app

REPO_ROOT = Path(__file__).resolve().parents[3]
NOWHERE = ("http://127.0.0.1:9",)  # nothing is proxied by these tests: the URLs only configure routes


@pytest.fixture
def database_url() -> str:
    """The gateway owns no database: skip creating one per test (`make_settings` asks for it)."""
    return "postgresql://unused@127.0.0.1:1/unused"


@pytest.fixture
async def gateway(make_settings, redis) -> AsyncIterator[TestClient]:  # type: ignore[no-untyped-def]
    """The real gateway app, every service configured (at an address nothing listens on)."""
    settings = make_settings(
        service_name="gateway", auth_url=NOWHERE, project_url=NOWHERE, comment_url=NOWHERE, notif_url=NOWHERE
    )
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as client:
        yield client
