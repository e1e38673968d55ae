"""5. Feed polling through the gateway: 304 polls/s and full feed reads/s for many users with many
notifications each, vs a trivial handler behind the same gateway."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import redis.asyncio as aioredis

from auth_svc.tokens import TokenIssuer
from bench import profile
from bench.consumer import _id
from bench.load import LoadResult, wrk
from bench.report import Row, Section
from bench.system import Servers, extra_process, swarm
from common.core.envelope import Event
from common.testing import service_urls

STREAM = "events:newNotif"


def _tokens(srv: Servers, n: int) -> list[tuple[str, str]]:
    issuer = TokenIssuer((srv.keys_dir / "jwt_private.pem").read_bytes(), "taskswarm", 3600, 3600)
    out = []
    for i in range(n):
        uid = str(uuid.uuid4())
        user = {"id": uid, "role": "user", "username": f"feed{i}"}
        out.append((uid, issuer.pair(user, str(uuid.uuid4()), str(uuid.uuid4())).access_token))
    return out


async def _seed(redis_url: str, user_ids: list[str], per_user: int) -> float:
    """One newNotif per round addressed to every user; wait until notif_svc has stored them all."""
    r = aioredis.from_url(redis_url, decode_responses=True)
    t0 = time.perf_counter()
    try:
        last = ""
        pipe = r.pipeline(transaction=False)
        actor = {"id": str(uuid.uuid4()), "username": "bench"}
        for k in range(per_user):
            data = {
                "type": "card_created",
                "recipients": user_ids,
                "actor": actor,
                "project_id": str(uuid.uuid4()),
                "card_id": str(uuid.uuid4()),
                "comment_id": None,
                "message": f"bench notification {k}",
            }
            pipe.xadd(STREAM, Event.new("newNotif", data, producer="project_svc").to_fields())  # type: ignore[arg-type]
        last = (await pipe.execute())[-1]
        while True:
            groups = {g["name"]: g for g in await r.xinfo_groups(STREAM)}
            g = groups.get("notif_svc")
            if g is not None and _id(g["last-delivered-id"]) >= _id(last) and g["pending"] == 0:
                return time.perf_counter() - t0
            await asyncio.sleep(0.05)
    finally:
        await r.aclose()


async def _etags(base: str, tokens: list[str]) -> tuple[list[str], int, int]:
    async with aiohttp.ClientSession() as http:
        etags = []
        items = 0
        for t in tokens:
            async with http.get(f"{base}/notifications", headers={"Authorization": f"Bearer {t}"}) as r:
                assert r.status == 200, r.status
                etags.append(r.headers["ETag"])
                items = len((await r.json())["items"])
        async with http.get(
            f"{base}/notifications", headers={"Authorization": f"Bearer {tokens[0]}", "If-None-Match": etags[0]}
        ) as r:
            status = r.status
        return etags, items, status


def _script(path: str, tokens: list[str], etags: list[str] | None) -> str:
    rows = []
    for i, t in enumerate(tokens):
        e = f", [[{etags[i]}]]" if etags else ""
        rows.append(f"{{[[{t}]]{e}}}")
    return (
        "local users = {" + ",\n".join(rows) + "}\nlocal i = 0\n"
        "request = function()\n  i = i % #users + 1\n  local u = users[i]\n"
        '  local h = {["Authorization"] = "Bearer " .. u[1]}\n'
        + ('  h["If-None-Match"] = u[2]\n' if etags else "")
        + f'  return wrk.format("GET", "{path}", h)\nend\n'
    )


def run(srv: Servers, quick: bool) -> Section:
    users, per_user = (200, 50) if quick else (1000, 100)
    seconds = 5 if quick else 15
    sec = Section(
        "feed",
        "5. Feed polling through the gateway",
        f"{users:,} users with {per_user} notifications each (seeded as newNotif events that notif_svc stores; "
        "tokens signed with the swarm's key). wrk, 1 thread, 32 connections, each request for the next user in "
        "turn: `GET /api/v1/notifications` with the user's `If-None-Match` (the 304 path), and without it (a "
        "full first page). Reference: the same polls, with the same tokens and ETags, through a second gateway "
        "process with the same settings whose notif_svc is a trivial handler built on the same service "
        "skeleton (`bench/trivial.py`: the same middlewares and token check, then a constant ETag compared); "
        "and the same 304 poll straight at notif_svc.",
    )
    pairs = _tokens(srv, users)
    tokens = [t for _, t in pairs]
    with swarm(srv) as s:
        seed_s = asyncio.run(_seed(s.redis_url, [u for u, _ in pairs], per_user))
        sec.notes.append(
            f"notif_svc stored {users * per_user:,} notifications in {seed_s:.1f} s "
            f"({users * per_user / seed_s:,.0f}/s, {per_user} events of {users} recipients)."
        )
        gw = f"{s.gateway_url}/api/v1"
        direct = service_urls(s)["notif_svc"][0]
        etags, items, status = asyncio.run(_etags(gw, tokens))
        sec.notes.append(f"A full read returns {items} items; a poll with the ETag answered {status}.")
        conns = 32

        def polls(base: str, path: str, validators: list[str] | None) -> LoadResult:
            """wrk for `seconds`, each request the next user's `path`, with `validators` as If-None-Match."""
            return wrk(base + path, script=_script(path, tokens, validators), seconds=seconds, connections=conns)

        poll = polls(s.gateway_url or "", "/api/v1/notifications", etags)
        full = polls(s.gateway_url or "", "/api/v1/notifications", None)
        # The reference: the same gateway (a second process, same settings) with a trivial authenticated
        # poll handler (bench/trivial.py) in notif_svc's place.
        notif = s.replicas_of("notif_svc")[0]
        assert s.gateway is not None
        with (
            extra_process(s, notif, factory="bench.trivial:create") as stand_in,
            extra_process(s, s.gateway, env={"NOTIF_URL": stand_in.url}) as reference_gateway,
        ):
            trivial = polls(reference_gateway.url, "/api/v1/notifications", [f'"{u}"' for u, _ in pairs])
        poll_direct = polls(direct, "/notifications", etags)
        if poll.rps < 0.8 * trivial.rps and s.gateway and s.gateway.pid:
            handle = profile.start(s.gateway.pid, seconds)
            if handle is not None:
                polls(s.gateway_url or "", "/api/v1/notifications", etags)
            sec.notes.append(
                "Target missed; profile of the gateway process under the 304 polls:\n\n" + profile.finish(handle)
            )
    ratio = poll.rps / trivial.rps
    sec.rows += [
        Row(
            "304 polls through the gateway",
            poll.line(),
            f"trivial authenticated 304 handler via gateway: {trivial.line()}",
            ratio,
            "≥ 80%",
            ratio >= 0.80,
        ),
        Row(
            "304 polls through the gateway",
            poll.line(),
            f"304 polls straight at notif_svc: {poll_direct.line()}",
            poll.rps / poll_direct.rps,
        ),
        Row(
            "full feed reads through the gateway",
            full.line(),
            f"304 polls via gateway: {poll.line()}",
            full.rps / poll.rps,
        ),
    ]
    for name, r in (("304 polls", poll), ("full reads", full), ("trivial", trivial), ("direct polls", poll_direct)):
        if r.errors:
            sec.notes.append(f"{name}: {r.errors} errors (non-2xx/3xx or socket) of {r.requests}.")
    return sec
