"""4. Consumer throughput: newUser events one project_svc process applies into its user replica, vs a
minimal hand-written batched consumer doing the same SQL, vs the bare XREADGROUP + XACK loop."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis

from bench import profile
from bench.cpu import CpuMeter
from bench.report import Row, Section
from bench.system import Servers, swarm
from common.contracts import topology
from common.contracts.users import UserReplicaSchema
from common.core.envelope import Event

STREAM = "events:newUser"
_user_schema = UserReplicaSchema()
# What the reference writes, into copies of project_svc's tables: the same statements the worker runs.
INBOX_INSERT = "INSERT INTO bench_inbox (event_id, event_type) VALUES ($1, 'newUser') ON CONFLICT DO NOTHING"
INBOX_INSERT_MANY = (
    "INSERT INTO bench_inbox (event_id, event_type) SELECT unnest($1::uuid[]), 'newUser' ON CONFLICT DO NOTHING"
)
UPSERT = (
    "INSERT INTO bench_users (id, username, email, full_name, role, version, created_at, updated_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO UPDATE SET username = excluded.username, "
    "email = excluded.email, full_name = excluded.full_name, role = excluded.role, version = excluded.version, "
    "created_at = excluded.created_at, updated_at = excluded.updated_at "
    "WHERE bench_users.version < excluded.version"
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


async def _all_acknowledged(r: aioredis.Redis, group: str, last: str) -> bool:
    for g in await r.xinfo_groups(STREAM):
        name = g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
        if name == group:
            delivered = g["last-delivered-id"]
            delivered = delivered.decode() if isinstance(delivered, bytes) else delivered
            return _id(delivered) >= _id(last) and g["pending"] == 0
    return False


async def drain_round(
    r: aioredis.Redis, pids: list[int], n: int, *, group: str = "project_svc", cpu: dict[str, float] | None = None
) -> float:
    """Seconds the consumer processes take to apply n events waiting for them.

    The processes are frozen (SIGSTOP) while the events are published, so the figure is the consumers'
    alone, not bounded by the publisher sharing the cores; timed from SIGCONT to the group having
    delivered and acknowledged the last event. `cpu`, if given, receives the cores each process used.
    """
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        last = await _publish(r, n)
    finally:
        meter = CpuMeter({f"consumer {i + 1}": pid for i, pid in enumerate(pids)}) if cpu is not None else None
        t0 = time.perf_counter()
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    while not await _all_acknowledged(r, group, last):  # noqa: ASYNC110 - polling Redis, not this process
        await asyncio.sleep(0.002)
    seconds = time.perf_counter() - t0
    if meter is not None and cpu is not None:
        cpu.update(meter.shares(seconds))
    return seconds


async def _reference(
    r: aioredis.Redis, db_url: str | None, group: str, n: int, *, bulk: bool = False, validate: bool = False
) -> float:
    """A hand-written batched consumer of the whole stream, in this process: XREADGROUP 100, one
    transaction per batch into copies of project_svc's `inbox` and `users`, XACK. Per event an inbox
    insert and the upsert (`bulk`: one multi-row inbox insert and the upserts pipelined by
    `executemany`; `validate`: each user loaded by the service's marshmallow schema first); with no
    database, the bare XREADGROUP + XACK loop."""
    await r.xgroup_create(STREAM, group, id="0")
    conn = await asyncpg.connect(db_url) if db_url else None
    if conn is not None:
        await conn.execute(
            "DROP TABLE IF EXISTS bench_users, bench_inbox;"
            "CREATE TABLE bench_users (LIKE users INCLUDING ALL);"
            "CREATE TABLE bench_inbox (LIKE inbox INCLUDING ALL)"
        )
    done = 0
    t0 = time.perf_counter()
    try:
        while done < n:
            reply: Any = await r.xreadgroup(group, "ref", {STREAM: ">"}, count=100, block=1000)
            if not reply:
                break
            entries = reply[0][1]
            if conn is not None:
                ids, rows = [], []
                for _, fields in entries:
                    ids.append(fields[b"id"].decode())
                    d = orjson.loads(fields[b"data"])
                    if validate:
                        d = {**_user_schema.load(d), "created_at": d["created_at"], "updated_at": d["updated_at"]}
                        d["id"] = str(d["id"])
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
                    if bulk:
                        await conn.execute(INBOX_INSERT_MANY, ids)
                        await conn.executemany(UPSERT, rows)
                    else:
                        for event_id, row in zip(ids, rows, strict=True):
                            await conn.execute(INBOX_INSERT, event_id)
                            await conn.execute(UPSERT, *row)
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
        "group `project_svc`), frozen with SIGSTOP so that publishing does not compete for the cores; the figure "
        "is events / (time from SIGCONT until the group has delivered and acknowledged the last one). The "
        "references then read the same entries in the same run, each through its own consumer group, in the "
        "benchmark process (XREADGROUP 100, one transaction per batch into copies of the `inbox` and `users` "
        "tables, XACK): the **minimal** hand-written batched consumer the issue describes (per event: the inbox "
        "insert and the same version-guarded upsert), an **optimised** one (one multi-row inbox insert per "
        "batch, the upserts pipelined with `executemany`: the SQL the worker runs), and the bare XREADGROUP + "
        "XACK loop. The target is held against the optimised one, the one doing the same SQL as the worker. A "
        "fourth reference is the optimised one validating each user with the service's own marshmallow schema "
        "(`UserReplicaSchema`), as the worker does: the share of the gap that is validation. project_svc runs "
        "with its defaults (CONSUMER_CONCURRENCY=2 consumer loops).",
    )
    spec = topology.spec_for("project_svc")

    async def main() -> dict[str, float]:
        with swarm(srv, only=["project_svc"], gateway=False) as s:
            db_url = s.database_url_of(spec)
            r = aioredis.from_url(s.redis_url)
            try:
                pids = [child.pid for child in s.replicas_of("project_svc") if child.pid]
                await drain_round(r, pids, 500)  # warm-up: group created, pool connected, statements prepared
                rates = {"service": n / await drain_round(r, pids, n)}
                conn = await asyncpg.connect(db_url)
                try:
                    applied = int(await conn.fetchval("SELECT count(*) FROM users"))
                finally:
                    await conn.close()
                total = n + 500
                sec.notes.append(f"project_svc's replica holds {applied:,} users after {total:,} events.")
                rates["minimal"] = total / await _reference(r, db_url, "bench_minimal", total)
                rates["optimised"] = total / await _reference(r, db_url, "bench_optimised", total, bulk=True)
                rates["validating"] = total / await _reference(
                    r, db_url, "bench_validating", total, bulk=True, validate=True
                )
                rates["bare"] = total / await _reference(r, None, "bench_bare", total)
                # A profile of a few seconds of applying: where the gap to the optimised reference goes.
                handle = profile.start(pids[0], 4)
                if handle is not None:
                    await asyncio.sleep(0.5)  # py-spy attaches
                    await drain_round(r, pids, 100_000)
                sec.notes.append(
                    "Profile of the project_svc process applying newUser events (what bounds it against the "
                    "optimised reference):\n\n" + profile.finish(handle)
                )
                return rates
            finally:
                await r.aclose()

    rates = asyncio.run(main())
    svc = rates["service"]
    shown = {
        "minimal": f"minimal hand-written batched: {rates['minimal']:,.0f} events/s",
        "optimised": f"optimised hand-written batched: {rates['optimised']:,.0f} events/s",
        "bare": f"bare XREADGROUP+XACK: {rates['bare']:,.0f} events/s",
        "validating": f"optimised + the same validation: {rates['validating']:,.0f} events/s",
    }
    ratio = svc / rates["optimised"]
    sec.rows += [
        Row(
            "project_svc consumer (1 process)",
            f"{svc:,.0f} events/s",
            shown["optimised"],
            ratio,
            "≥ 75%",
            ratio >= 0.75,
        ),
        Row("project_svc consumer (1 process)", f"{svc:,.0f} events/s", shown["validating"], svc / rates["validating"]),
        Row("project_svc consumer (1 process)", f"{svc:,.0f} events/s", shown["minimal"], svc / rates["minimal"]),
        Row("project_svc consumer (1 process)", f"{svc:,.0f} events/s", shown["bare"], svc / rates["bare"]),
        Row(
            "optimised hand-written consumer",
            f"{rates['optimised']:,.0f} events/s",
            shown["bare"],
            rates["optimised"] / rates["bare"],
        ),
    ]
    return sec
