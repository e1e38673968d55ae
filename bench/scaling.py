"""6. Scaling (part): newUser consumer throughput of project_svc with 1, 2 and 4 replicas."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from bench.consumer import drain_round
from bench.cpu import CpuMeter
from bench.report import Row, Section
from bench.system import Servers, swarm


def run(srv: Servers, quick: bool) -> Section:
    n = 5_000 if quick else 20_000
    sec = Section(
        "scaling",
        "6. Scaling: consumer replicas",
        f"As in 4., {n:,} newUser events for project_svc alone, now run as 1, 2 and 4 replica processes (one "
        "consumer group; each replica with its default 2 consumer loops). Reference: 1 replica, in the same "
        "run. With the cores each process used while applying (from /proc): one replica waits on its round "
        "trips part of the time, more replicas overlap them until the two cores are busy.",
    )
    rates: dict[int, float] = {}
    for k in (1, 2, 4):
        with swarm(srv, only=["project_svc"], gateway=False, replicas={"project_svc": k}) as s:
            pids = [child.pid for child in s.replicas_of("project_svc") if child.pid]
            shares: dict[str, float] = {}

            async def main(url: str = s.redis_url, pids: list[int] = pids, shares: dict[str, float] = shares) -> float:
                r = aioredis.from_url(url)
                try:
                    await drain_round(r, pids, 500)
                    return await drain_round(r, pids, n, cpu=shares)
                finally:
                    await r.aclose()

            rates[k] = n / asyncio.run(main())
            sec.notes.append(f"{k} replica(s), cores used while applying: {CpuMeter.describe(shares)}.")
    for k, v in rates.items():
        sec.rows.append(
            Row(f"{k} replica(s)", f"{v:,.0f} events/s", f"1 replica: {rates[1]:,.0f} events/s", v / rates[1])
        )
    return sec
