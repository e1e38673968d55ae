"""2. Write path through the gateway: create-card and create-comment requests/s and p99."""

from __future__ import annotations

import asyncio

import aiohttp

from bench.client import Api
from bench.load import wrk
from bench.propagation import _retry
from bench.report import Row, Section
from bench.system import Servers, swarm


async def _seed(gateway_url: str) -> tuple[str, str, str]:
    async with aiohttp.ClientSession() as http:
        api = Api(http, gateway_url)
        owner = await api.register("writer")
        member = await api.register("member")
        project = await api.project(owner)
        await _retry(lambda: api.ok("POST", f"/projects/{project}/members", owner, json={"user_id": member.id}))
        card = await api.card(owner, project)
        await _retry(lambda: api.ok("POST", f"/cards/{card}/comments", owner, json={"body": "warm"}))
        return owner.token, project, card


def run(srv: Servers, quick: bool) -> Section:
    seconds = 5 if quick else 15
    sec = Section(
        "writes",
        "2. Write path through the gateway",
        f"wrk, 1 thread, 16 connections, {seconds} s each, one user in a project of two members (so each card "
        "also notifies the other member). Reference: the read `GET /api/v1/cards/{id}` through the same gateway "
        "in the same run.",
    )
    with swarm(srv) as s:
        token, project, card = asyncio.run(_seed(str(s.gateway_url)))
        h = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        base = f"{s.gateway_url}/api/v1"
        read = wrk(f"{base}/cards/{card}", seconds=seconds, connections=16, headers=h)
        cards = wrk(
            f"{base}/projects/{project}/cards",
            seconds=seconds,
            connections=16,
            method="POST",
            body='{"title": "bench card"}',
            headers=h,
        )
        comments = wrk(
            f"{base}/cards/{card}/comments",
            seconds=seconds,
            connections=16,
            method="POST",
            body='{"body": "bench comment"}',
            headers=h,
        )
    for name, r in (("create card", cards), ("create comment", comments)):
        sec.rows.append(
            Row(
                f"{name}: req/s, p50 / p99",
                f"{r.rps:,.0f} req/s, {r.p50_ms:.1f} / {r.p99_ms:.1f} ms",
                f"GET card: {read.rps:,.0f} req/s, {read.p50_ms:.1f} / {read.p99_ms:.1f} ms",
                r.rps / read.rps,
            )
        )
        if r.errors:
            sec.notes.append(f"{name}: {r.errors} non-2xx/socket errors of {r.requests}.")
    return sec
