"""4. Consumer throughput: newUser events one project_svc process applies into its user replica, vs a
minimal hand-written batched consumer doing the same SQL, vs the bare XREADGROUP + XACK loop."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis

from bench import profile
from bench.report import Row, Section
from bench.system import Servers, swarm
from common import topology
from common.events import Event

STREAM = "events:newUser"
UPSERT = (
    "INSERT INTO {table} (id, username, email, full_name, role, version, created_at, updated_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO UPDATE SET username = excluded.username, "
    "email = excluded.email, full_name = excluded.full_name, role = excluded.role, version = excluded.version, "
    "created_at = excluded.created_at, updated_at = excluded.updated_at "
    "WHERE {table}.version < excluded.version RETURNING true"
)


def _user_event() -> dict[str, str]:
    uid = str(uuid.uuid4())
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    name = "u" + uid[:12]
    data = {
        "id": uid,
        "username": name,
        "email": f"{name}@example.com",
        "full_name": name.upper(),
        "role": "user",
        "created_at": now,
        "updated_at": now,
        "version": 1,
    }
    return Event.new("newUser", data, producer="auth_svc").to_fields()


async def _publish(r: aioredis.Redis, n: int) -> str:
    last = ""
    for start in range(0, n, 1000):
        pipe = r.pipeline(transaction=False)
        for _ in range(min(1000, n - start)):
            pipe.xadd(STREAM, _user_event())  # type: ignore[arg-type]
        last = (await pipe.execute())[-1]
    return last.decode() if isinstance(last, bytes) else str(last)


def _id(entry_id: str) -> tuple[int, int]:
    a, _, b = entry_id.partition("-")
    return int(a), int(b or 0)


async def _service_round(r: aioredis.Redis, n: int) -> float:
    """Publish n events and time until the project_svc group has delivered and acknowledged them all."""
    t0 = time.perf_counter()
    last = await _publish(r, n)
    while True:
        groups = {
            g["name"].decode() if isinstance(g["name"], bytes) else g["name"]: g for g in await r.xinfo_groups(STREAM)
        }
        g = groups.get("project_svc")
        if g is not None:
            delivered = g["last-delivered-id"]
            delivered = delivered.decode() if isinstance(delivered, bytes) else delivered
            if _id(delivered) >= _id(last) and g["pending"] == 0:
                return time.perf_counter() - t0
        await asyncio.sleep(0.005)


async def _reference(r: aioredis.Redis, db_url: str | None, group: str, n: int, batch: int = 100) -> float:
    """A minimal batched consumer of the whole stream: XREADGROUP, (one transaction of upserts,) XACK."""
    await r.xgroup_create(STREAM, group, id="0")
    conn = await asyncpg.connect(db_url) if db_url else None
    sql = UPSERT.format(table="bench_users")
    if conn is not None:
        await conn.execute("CREATE TABLE IF NOT EXISTS bench_users (LIKE users INCLUDING ALL)")
    done = 0
    t0 = time.perf_counter()
    try:
        while done < n:
            reply: Any = await r.xreadgroup(group, "ref", {STREAM: ">"}, count=batch, block=1000)
            if not reply:
                break
            entries = reply[0][1]
            if conn is not None:
                rows = []
                for _, fields in entries:
                    d = orjson.loads(fields[b"data"])
                    rows.append(
                        (
                            d["id"],
                            d["username"],
                            d.get("email"),
                            d.get("full_name"),
                            d.get("role", "user"),
                            d["version"],
                            datetime.fromisoformat(d["created_at"]),
                            datetime.fromisoformat(d["updated_at"]),
                        )
                    )
                async with conn.transaction():
                    for row in rows:
                        await conn.fetchval(sql, *row)
            await r.xack(STREAM, group, *[eid for eid, _ in entries])
            done += len(entries)
        return time.perf_counter() - t0
    finally:
        if conn is not None:
            await conn.close()


def run(srv: Servers, quick: bool) -> Section:
    n = 5_000 if quick else 20_000
    sec = Section(
        "consumer",
        "4. Consumer throughput (newUser → user replica)",
        f"{n:,} newUser events are XADDed to `{STREAM}` while only project_svc runs (one process, its consumer "
        "group `project_svc`); the figure is events / (time from the first XADD until the group has delivered "
        "and acknowledged the last one). The references then read the same entries in the same run, each "
        "through its own consumer group, in the benchmark process: a hand-written batched consumer (XREADGROUP "
        "100, one transaction of the same version-guarded upsert per batch into a copy of the `users` table, "
        "XACK) and the bare XREADGROUP 100 + XACK loop.",
    )
    spec = topology.spec_for("project_svc")

    async def main() -> tuple[float, float, float, int]:
        with swarm(srv, only=["project_svc"], gateway=False) as s:
            db_url = s.database_url_of(spec)
            r = aioredis.from_url(s.redis_url)
            try:
                await _service_round(r, 500)  # warm-up: group created, pool connected
                service_s = await _service_round(r, n)
                conn = await asyncpg.connect(db_url)
                try:
                    applied = int(await conn.fetchval("SELECT count(*) FROM users"))
                finally:
                    await conn.close()
                total = n + 500
                ref_s = await _reference(r, db_url, "bench_ref", total)
                bare_s = await _reference(r, None, "bench_bare", total)
                sec.notes.append(f"project_svc's replica holds {applied:,} users after {total:,} events.")
                ratio = (n / service_s) / (total / ref_s)
                if ratio < 0.75 and s.replicas_of("project_svc"):
                    pid = s.replicas_of("project_svc")[0].pid
                    handle = profile.start(pid, 4) if pid else None
                    if handle is not None:
                        await asyncio.sleep(0.5)  # py-spy attaches
                        await _service_round(r, n)
                    sec.notes.append(
                        "Target missed; profile of the project_svc process applying the events:\n\n"
                        + profile.finish(handle)
                    )
                return service_s, ref_s * n / total, bare_s * n / total, total
            finally:
                await r.aclose()

    service_s, ref_s, bare_s, _ = asyncio.run(main())
    svc, ref, bare = n / service_s, n / ref_s, n / bare_s
    sec.rows += [
        Row(
            "project_svc consumer (1 process)",
            f"{svc:,.0f} events/s",
            f"hand-written batched: {ref:,.0f} events/s",
            svc / ref,
            "≥ 75%",
            svc / ref >= 0.75,
        ),
        Row(
            "project_svc consumer (1 process)",
            f"{svc:,.0f} events/s",
            f"bare XREADGROUP+XACK: {bare:,.0f} events/s",
            svc / bare,
        ),
        Row(
            "hand-written batched consumer",
            f"{ref:,.0f} events/s",
            f"bare XREADGROUP+XACK: {bare:,.0f} events/s",
            ref / bare,
        ),
    ]
    return sec
