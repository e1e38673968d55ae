"""A small API client to seed data for the benchmarks (register, project, members, cards, comments)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp

PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class Account:
    id: str
    username: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Api:
    def __init__(self, http: aiohttp.ClientSession, gateway_url: str) -> None:
        self.http = http
        self.base = f"{gateway_url}/api/v1"

    async def ok(self, method: str, path: str, who: Account | None = None, json: Any = None, **params: Any) -> Any:
        headers = who.auth if who else {}
        async with self.http.request(method, self.base + path, json=json, headers=headers, params=params) as r:
            body = await r.json() if r.content_type == "application/json" else None
            if not 200 <= r.status < 300:
                raise RuntimeError(f"{method} {path} → {r.status} {body}")
            return body

    async def register(self, prefix: str) -> Account:
        username = f"{prefix}_{uuid.uuid4().hex[:8]}"
        body = await self.ok(
            "POST",
            "/auth/register",
            json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
        )
        return Account(body["user"]["id"], username, body["access_token"])

    async def project(self, owner: Account, title: str = "bench") -> str:
        return str((await self.ok("POST", "/projects", owner, json={"title": title}))["id"])

    async def card(self, who: Account, project_id: str, title: str = "card") -> str:
        return str((await self.ok("POST", f"/projects/{project_id}/cards", who, json={"title": title}))["id"])
