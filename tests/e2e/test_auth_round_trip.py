"""register → login → me → refresh → logout through the gateway, against real processes."""

from __future__ import annotations

import aiohttp
import pytest

from common.testing import service_urls

pytestmark = pytest.mark.e2e


async def test_the_auth_round_trip_works_through_the_gateway(system):
    base = f"{system.gateway_url}/api/v1"
    credentials = {"username": "e2e_alice", "email": "e2e_alice@example.com", "password": "long enough pw"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/auth/register", json=credentials) as response:
            assert response.status == 201
            assert response.headers["X-Request-ID"]
            user = (await response.json())["user"]
        async with http.post(f"{base}/auth/login", json={"username": "e2e_alice", "password": "long enough pw"}) as r:
            assert r.status == 200
            tokens = await r.json()
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        async with http.get(f"{base}/users/me", headers=auth) as response:
            assert response.status == 200
            assert (await response.json())["id"] == user["id"]
        async with http.post(f"{base}/auth/refresh", json={"refresh_token": tokens["refresh_token"]}) as response:
            assert response.status == 200
            rotated = await response.json()
        auth = {"Authorization": f"Bearer {rotated['access_token']}"}
        async with http.post(f"{base}/auth/logout", headers=auth) as response:
            assert response.status == 204
        async with http.get(f"{base}/users/me", headers=auth) as response:
            assert response.status == 401  # refused at the edge
            assert (await response.json())["error"]["code"] == "token_revoked"
        direct = service_urls(system)["auth_svc"][0]
        async with http.get(f"{direct}/users/me", headers=auth) as response:
            assert response.status == 401  # and by the service itself
        async with http.post(f"{base}/auth/refresh", json={"refresh_token": rotated["refresh_token"]}) as response:
            assert response.status == 401


async def test_bad_input_through_the_gateway_is_a_4xx_in_the_error_format(system):
    base = f"{system.gateway_url}/api/v1"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/auth/register", data=b"{nope", headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400
            assert (await r.json())["error"]["code"] == "invalid_json"
        async with http.get(f"{base}/users/me") as response:
            assert response.status == 401
            assert (await response.json())["error"]["code"] == "missing_token"
        async with http.get(f"{base}/no/such/thing", headers={"Authorization": "Bearer x"}) as response:
            assert response.status in (401, 404)
            assert "error" in await response.json()
