from __future__ import annotations

import pytest

from tests.auth.conftest import bearer


async def test_register_returns_the_user_and_a_token_pair(auth_client):
    response = await auth_client.post(
        "/auth/register", json={"username": "alice", "email": "alice@example.com", "password": "s3cret-pass"}
    )
    assert response.status == 201
    body = await response.json()
    assert body["user"]["username"] == "alice"
    assert body["user"]["role"] == "user"
    assert "password" not in body["user"] and "password_hash" not in body["user"]
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 15 * 60
    assert body["access_token"] and body["refresh_token"]
    assert response.headers["X-Request-ID"]
