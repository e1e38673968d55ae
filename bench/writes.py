"""2. Write path through the gateway: create-card and create-comment requests/s and p99."""

from __future__ import annotations

import asyncio

import aiohttp

from bench.client import Api
from bench.load import wrk
from bench.propagation import _retry
from bench.report import Row, Section
from bench.system import Servers, swarm

SPREAD_CARDS = 100


async def _seed(gateway_url: str) -> tuple[str, str, list[str]]:
    """A project of two members and SPREAD_CARDS cards, each commented once (its replicas are warm)."""
    async with aiohttp.ClientSession() as http:
        api = Api(http, gateway_url)
        owner = await api.register("writer")
        member = await api.register("member")
        project = await api.project(owner)
        await _retry(lambda: api.ok("POST", f"/projects/{project}/members", owner, json={"user_id": member.id}))
        cards = [await api.card(owner, project, f"card {i}") for i in range(SPREAD_CARDS)]
        for card in cards:
            await _retry(lambda card=card: api.ok("POST", f"/cards/{card}/comments", owner, json={"body": "warm"}))
        return owner.token, project, cards


def _comments_on(cards: list[str], token: str) -> str:
    """A wrk script posting a comment to each card in turn."""
    paths = ", ".join(f'"/api/v1/cards/{card}/comments"' for card in cards)
    return (
        f"local paths = {{{paths}}}\nlocal i = 0\n"
        f'wrk.method = "POST"\nwrk.body = [[{{"body": "bench comment"}}]]\n'
        f'wrk.headers["Authorization"] = "Bearer {token}"\nwrk.headers["Content-Type"] = "application/json"\n'
        "request = function()\n  i = i % #paths + 1\n  return wrk.format(nil, paths[i])\nend\n"
    )


def run(srv: Servers, quick: bool) -> Section:
    seconds = 5 if quick else 15
    sec = Section(
        "writes",
        "2. Write path through the gateway",
        f"wrk, 1 thread, 16 connections, {seconds} s each, one user in a project of two members (so each card "
        f"also notifies the other member). Comments go to {SPREAD_CARDS} cards in turn, then all to one card: "
        "the worst case, where every comment waits for the card's row lock (its comment counter). "
        "Reference: the read `GET /api/v1/cards/{id}` through the same gateway in the same run.",
    )
    with swarm(srv) as s:
        token, project, cards = asyncio.run(_seed(str(s.gateway_url)))
        card = cards[0]
        h = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        base = f"{s.gateway_url}/api/v1"
        read = wrk(f"{base}/cards/{card}", seconds=seconds, connections=16, headers=h)
        created = wrk(
            f"{base}/projects/{project}/cards",
            seconds=seconds,
            connections=16,
            method="POST",
            body='{"title": "bench card"}',
            headers=h,
        )
        spread = wrk(
            f"{base}/cards/{card}/comments", seconds=seconds, connections=16, script=_comments_on(cards, token)
        )
        hot = wrk(
            f"{base}/cards/{card}/comments",
            seconds=seconds,
            connections=16,
            method="POST",
            body='{"body": "bench comment"}',
            headers=h,
        )
    for name, r in (
        ("create card", created),
        (f"create comment, over {SPREAD_CARDS} cards", spread),
        ("create comment, all on one card", hot),
    ):
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
