"""1. Gateway overhead on GET /api/v1/cards/{id}: gateway vs straight at project_svc vs nginx (keepalive)."""

from __future__ import annotations

import asyncio

import aiohttp

from bench import profile
from bench.client import Api
from bench.load import LoadResult, wrk
from bench.nginx import nginx_in_front_of
from bench.report import Row, Section
from bench.system import Servers, swarm


async def _seed(gateway_url: str) -> tuple[str, str]:
    async with aiohttp.ClientSession() as http:
        api = Api(http, gateway_url)
        owner = await api.register("bench")
        project = await api.project(owner)
        card = await api.card(owner, project)
        return owner.token, card


def run(srv: Servers, quick: bool) -> Section:
    sec = Section(
        "gateway",
        "1. Gateway overhead on `GET /api/v1/cards/{id}`",
        "One card, one member's token. Throughput: wrk 1 thread, 32 connections. Latency: wrk 1 connection "
        "(no queueing, so p50 is the per-request cost). Three targets in turn against the same project_svc "
        "process: the gateway, project_svc directly, and nginx (keepalive upstream pool) in front of project_svc.",
    )
    seconds = 5 if quick else 15
    with swarm(srv) as s:
        token, card = asyncio.run(_seed(str(s.gateway_url)))
        direct_base = s.service_urls()["project_svc"][0]
        headers = {"Authorization": f"Bearer {token}"}
        with nginx_in_front_of(direct_base) as nginx_base:
            urls = {
                "gateway": f"{s.gateway_url}/api/v1/cards/{card}",
                "direct": f"{direct_base}/cards/{card}",
                "nginx": f"{nginx_base}/cards/{card}",
            }
            for u in urls.values():  # warm-up (connection pools, caches)
                wrk(u, seconds=1, connections=8, headers=headers)
            tput: dict[str, LoadResult] = {
                k: wrk(u, seconds=seconds, connections=32, headers=headers) for k, u in urls.items()
            }
            lat: dict[str, LoadResult] = {
                k: wrk(u, seconds=seconds, connections=1, headers=headers) for k, u in urls.items()
            }
        for name, r in {
            **{f"{k} (32 conns)": v for k, v in tput.items()},
            **{f"{k} (1 conn)": v for k, v in lat.items()},
        }.items():
            if r.errors:
                sec.notes.append(f"{name}: {r.errors} errors of {r.requests} requests.")
        g, d, n = tput["gateway"], tput["direct"], tput["nginx"]
        r_d, r_n = g.rps / d.rps, g.rps / n.rps
        added = lat["gateway"].p50_ms - lat["direct"].p50_ms
        sec.rows += [
            Row(
                "throughput through the gateway",
                f"{g.rps:,.0f} req/s",
                f"direct: {d.rps:,.0f} req/s",
                r_d,
                "≥ 70%",
                r_d >= 0.70,
            ),
            Row(
                "throughput through the gateway",
                f"{g.rps:,.0f} req/s",
                f"nginx: {n.rps:,.0f} req/s",
                r_n,
                "≥ 70%",
                r_n >= 0.70,
            ),
            Row(
                "p50 / p99 at 32 conns, gateway",
                f"{g.p50_ms:.2f} / {g.p99_ms:.2f} ms",
                f"direct: {d.p50_ms:.2f} / {d.p99_ms:.2f} ms; nginx: {n.p50_ms:.2f} / {n.p99_ms:.2f} ms",
                g.p50_ms / d.p50_ms,
            ),
            Row(
                "p50 at 1 conn, gateway",
                f"{lat['gateway'].p50_ms:.2f} ms (p99 {lat['gateway'].p99_ms:.2f})",
                f"direct: {lat['direct'].p50_ms:.2f} ms (p99 {lat['direct'].p99_ms:.2f}); nginx: "
                f"{lat['nginx'].p50_ms:.2f} ms (p99 {lat['nginx'].p99_ms:.2f})",
                lat["gateway"].p50_ms / lat["direct"].p50_ms,
            ),
            Row(
                "p50 added by the gateway (1 conn)",
                f"{added:.2f} ms",
                f"nginx adds {lat['nginx'].p50_ms - lat['direct'].p50_ms:.2f} ms",
                None,
                "≤ 1 ms",
                added <= 1.0,
            ),
        ]
        if not all(r.met for r in sec.rows if r.met is not None) and s.gateway and s.gateway.pid:
            handle = profile.start(s.gateway.pid, seconds)
            if handle is not None:
                wrk(urls["gateway"], seconds=seconds, connections=32, headers=headers)
            sec.notes.append(
                "Target missed; profile of the gateway process under the 32-connection load:\n\n"
                + profile.finish(handle)
            )
    return sec
