"""6. Scaling (part 2): feed and card-list latency as the tables grow from 10k to 1M rows."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import asyncpg

from bench.client import Api
from bench.feed import _seed as seed_notifications
from bench.load import LoadResult, wrk
from bench.report import Row, Section
from bench.system import Servers, swarm
from common.contracts import topology

# What one user sees stays the same size while everyone else's rows grow around it.
MY_CARDS = 100
MY_NOTIFICATIONS = 100
CARDS_PER_FILLER_PROJECT = 1_000
FILLER_RECIPIENTS = 10_000

# Filler rows: spread over the last year, so they interleave in time with the user's own rows.
FILL_PROJECTS = """
INSERT INTO projects (id, title, owner_id)
SELECT gen_random_uuid(), 'filler', gen_random_uuid() FROM generate_series(1, $1)
"""
FILL_CARDS = """
INSERT INTO cards (id, project_id, title, status, created_by, created_at, updated_at)
SELECT gen_random_uuid(), filler.ids[1 + g % cardinality(filler.ids)], 'filler card ' || g,
       (ARRAY['todo', 'in_progress', 'review', 'done'])[1 + g % 4], gen_random_uuid(),
       now() - random() * interval '365 days', now()
FROM generate_series(1, $1) AS g, (SELECT array_agg(id) AS ids FROM projects WHERE title = 'filler') AS filler
"""
FILL_NOTIFICATIONS = """
INSERT INTO notifications (id, event_id, recipient_id, type, message, created_at)
SELECT gen_random_uuid(), gen_random_uuid(), people.ids[1 + g % cardinality(people.ids)], 'card_created',
       'filler notification', now() - random() * interval '365 days'
FROM generate_series(1, $1) AS g,
     (SELECT array_agg(gen_random_uuid()) AS ids FROM generate_series(1, $2)) AS people
"""


async def _grow(project_db: str, notif_db: str, cards: int, notifications: int) -> float:
    """Add filler rows until the tables hold `cards` cards and `notifications` notifications."""
    t0 = time.perf_counter()
    p, n = await asyncpg.connect(project_db), await asyncpg.connect(notif_db)
    try:
        missing = cards - int(await p.fetchval("SELECT count(*) FROM cards"))
        if missing > 0:
            await p.execute(FILL_PROJECTS, max(1, missing // CARDS_PER_FILLER_PROJECT))
            await p.execute(FILL_CARDS, missing)
            await p.execute("ANALYZE projects; ANALYZE cards")
        missing = notifications - int(await n.fetchval("SELECT count(*) FROM notifications"))
        if missing > 0:
            await n.execute(FILL_NOTIFICATIONS, missing, FILLER_RECIPIENTS)
            await n.execute("ANALYZE notifications")
    finally:
        await p.close()
        await n.close()
    return time.perf_counter() - t0


async def _me(gateway_url: str, redis_url: str) -> tuple[str, str]:
    """A user with one project of MY_CARDS cards and MY_NOTIFICATIONS notifications (the real paths)."""
    async with aiohttp.ClientSession() as http:
        api = Api(http, gateway_url)
        me = await api.register("rows")
        project = await api.project(me)
        for i in range(MY_CARDS):
            await api.card(me, project, f"mine {i}")
    await seed_notifications(redis_url, [me.id], MY_NOTIFICATIONS)
    return me.token, project


def run(srv: Servers, quick: bool) -> Section:
    sizes = (10_000, 100_000) if quick else (10_000, 100_000, 1_000_000)
    seconds = 3 if quick else 5
    sec = Section(
        "rows",
        "6. Scaling: latency as the tables grow",
        f"One user owns a project of {MY_CARDS} cards (created through the API) and has {MY_NOTIFICATIONS} "
        "notifications (newNotif events applied by notif_svc). Around them, filler rows are inserted straight "
        "into project_svc's and notif_svc's databases (SQL `generate_series`: the API would take an hour for "
        "a million), spread over the last year, until `cards` and `notifications` each hold "
        f"{', '.join(f'{n:,}' for n in sizes)} rows (then ANALYZE). At each size, wrk with 1 connection for "
        f"{seconds} s per request, through the gateway: the project's first card page, the first page of "
        "`GET /cards` (cards across my projects) and the first feed page (no validator: a real query). "
        "Reference: the same request at the smallest size, in the same run. Target: flat (the queries are "
        "index-backed), taken as p50 within 1.5 times the smallest size's.",
    )
    requests = {
        "project's cards, first page": "/projects/{project}/cards?limit=20",
        "my cards across projects, first page": "/cards?limit=20",
        "feed, first page": "/notifications?limit=20",
    }
    results: dict[int, dict[str, LoadResult]] = {}
    with swarm(srv) as s:
        token, project = asyncio.run(_me(str(s.gateway_url), s.redis_url))
        project_db = s.database_url_of(topology.spec_for("project_svc"))
        notif_db = s.database_url_of(topology.spec_for("notif_svc"))
        assert project_db and notif_db
        headers = {"Authorization": f"Bearer {token}"}
        for size in sizes:
            grow_s = asyncio.run(_grow(project_db, notif_db, size, size))
            sec.notes.append(f"Growing to {size:,} cards and {size:,} notifications took {grow_s:.1f} s.")
            results[size] = {}
            for name, path in requests.items():
                url = f"{s.gateway_url}/api/v1{path.format(project=project)}"
                wrk(url, seconds=1, connections=1, headers=headers)  # warm-up: plans, caches
                results[size][name] = wrk(url, seconds=seconds, connections=1, headers=headers)
    smallest = sizes[0]
    for name in requests:
        base = results[smallest][name]
        for size in sizes[1:]:
            r = results[size][name]
            ratio = r.p50_ms / base.p50_ms
            sec.rows.append(
                Row(
                    f"{name} at {size:,} rows",
                    f"p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms",
                    f"at {smallest:,} rows: p50 {base.p50_ms:.2f} ms, p99 {base.p99_ms:.2f} ms",
                    ratio,
                    "flat (≤ 150%)",
                    ratio <= 1.5,
                )
            )
    for size, by_name in results.items():
        for name, r in by_name.items():
            if r.errors:
                sec.notes.append(f"{name} at {size:,} rows: {r.errors} errors of {r.requests} requests.")
    return sec
