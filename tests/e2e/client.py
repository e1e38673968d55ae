"""A thin client of the public API for end-to-end tests: one call, its status and decoded body."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class Account:
    id: str
    username: str
    token: str


class Api:
    def __init__(self, http: aiohttp.ClientSession, gateway_url: str) -> None:
        self.http = http
        self.base = f"{gateway_url}/api/v1"

    async def call(
        self, method: str, path: str, who: Account | None = None, json: Any = None, **params: Any
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {who.token}"} if who else {}
        async with self.http.request(method, self.base + path, json=json, headers=headers, params=params) as r:
            body = await r.json() if r.content_type == "application/json" else None
            return r.status, body

    async def ok(self, method: str, path: str, who: Account | None = None, json: Any = None, **params: Any) -> Any:
        """The call's body; fails the test unless it answered 2xx."""
        status, body = await self.call(method, path, who, json, **params)
        assert 200 <= status < 300, f"{method} {path} → {status} {body}"
        return body

    async def register(self, prefix: str) -> Account:
        username = f"{prefix}_{uuid.uuid4().hex[:6]}"
        body = await self.ok(
            "POST",
            "/auth/register",
            json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
        )
        return Account(body["user"]["id"], username, body["access_token"])

    async def all_pages(self, path: str, who: Account, **params: Any) -> list[Any]:
        """Every item of a cursor-paginated listing."""
        items: list[Any] = []
        cursor: str | None = None
        while True:
            page_params = {**params, "limit": 100, **({"cursor": cursor} if cursor else {})}
            page = await self.ok("GET", path, who, **page_params)
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return items

    async def admin(self, prefix: str, data_dir: Path) -> Account:
        """A new user promoted as an operator does it (`swarm users promote` on the system in `data_dir`),
        logged in again for a token that carries the role."""
        user = await self.register(prefix)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from common.swarm.cli import main; main()",
            *("users", "promote", user.username, "--data-dir", str(data_dir)),
            env=dict(os.environ),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        assert process.returncode == 0, output.decode()
        tokens = await self.ok("POST", "/auth/login", json={"username": user.username, "password": PASSWORD})
        return Account(user.id, user.username, tokens["access_token"])
