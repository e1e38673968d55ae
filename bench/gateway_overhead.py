"""1. Gateway overhead on GET /api/v1/cards/{id}: gateway vs straight at project_svc vs nginx (keepalive),
with the gateway as one process and as two worker processes sharing its port (SO_REUSEPORT)."""

from __future__ import annotations

import asyncio

import aiohttp

from bench import profile
from bench.client import Api
from bench.cpu import CpuMeter
from bench.load import LoadResult, wrk
from bench.nginx import nginx_in_front_of
from bench.report import Row, Section
from bench.system import Servers, swarm
from common.testing import service_urls

WORKERS = (1, 2)


async def _seed(gateway_url: str) -> tuple[str, str]:
    async with aiohttp.ClientSession() as http:
        api = Api(http, gateway_url)
        owner = await api.register("bench")
        project = await api.project(owner)
        card = await api.card(owner, project)
        return owner.token, card


def _measure(srv: Servers, workers: int, seconds: float, sec: Section) -> dict[str, dict[str, LoadResult]]:
    """Throughput (32 connections) and latency (1 connection) of the three targets, in one swarm."""
    with swarm(srv, gateway_workers=workers) as s:
        token, card = asyncio.run(_seed(str(s.gateway_url)))
        direct_base = service_urls(s)["project_svc"][0]
        headers = {"Authorization": f"Bearer {token}"}
        with nginx_in_front_of(direct_base) as nginx_base:
            urls = {
                "gateway": f"{s.gateway_url}/api/v1/cards/{card}",
                "direct": f"{direct_base}/cards/{card}",
                "nginx": f"{nginx_base}/cards/{card}",
            }
            for u in urls.values():  # warm-up (connection pools, caches)
                wrk(u, seconds=1, connections=8, headers=headers)
            pids = {f"gateway {c.index}": c.pid for c in s.gateway_workers if c.pid}
            pids["project_svc"] = s.replicas_of("project_svc")[0].pid or 0
            tput: dict[str, LoadResult] = {}
            for target, url in urls.items():
                meter = CpuMeter(pids)
                tput[target] = wrk(url, seconds=seconds, connections=32, headers=headers)
                if target == "gateway":
                    cores = meter.shares(seconds)
                    per_request = {k: v / tput[target].rps * 1000 for k, v in cores.items() if k in pids}
                    sec.notes.append(
                        f"{workers} gateway worker(s), cores used under the 32-connection load: "
                        f"{CpuMeter.describe(cores)}; CPU per request: "
                        + ", ".join(f"{k} {v:.2f} ms" for k, v in per_request.items())
                        + "."
                    )
            results = {
                "tput": tput,
                "lat": {k: wrk(u, seconds=seconds / 2, connections=1, headers=headers) for k, u in urls.items()},
            }
        if workers == 1 and tput["gateway"].rps < 0.7 * tput["direct"].rps and s.gateway and s.gateway.pid:
            handle = profile.start(s.gateway.pid, seconds)
            if handle is not None:
                wrk(urls["gateway"], seconds=seconds, connections=32, headers=headers)
            sec.notes.append(
                "One gateway process misses the target; its profile under the 32-connection load:\n\n"
                + profile.finish(handle)
            )
    for kind, by_target in results.items():
        for target, r in by_target.items():
            if r.errors:
                sec.notes.append(f"{workers} worker(s), {target} ({kind}): {r.errors} errors of {r.requests}.")
    return results


def run(srv: Servers, quick: bool) -> Section:
    seconds = 5 if quick else 10
    sec = Section(
        "gateway",
        "1. Gateway overhead on `GET /api/v1/cards/{id}`",
        "One card, one member's token. Throughput: wrk 1 thread, 32 connections. Latency: wrk 1 connection "
        "(no queueing, so p50 is the per-request cost). Three targets in turn against the same project_svc "
        "process: the gateway, project_svc directly, and nginx (keepalive upstream pool) in front of project_svc. "
        f"Done twice, each in its own system: the gateway as one process, then as {WORKERS[-1]} worker processes "
        "sharing its port (`swarm up --gateway-workers`, SO_REUSEPORT); references re-measured each time.",
    )
    for workers in WORKERS:
        m = _measure(srv, workers, seconds, sec)
        g, d, n = m["tput"]["gateway"], m["tput"]["direct"], m["tput"]["nginx"]
        lat = m["lat"]
        r_d, r_n = g.rps / d.rps, g.rps / n.rps
        added = lat["gateway"].p50_ms - lat["direct"].p50_ms
        label = "1 gateway process" if workers == 1 else f"{workers} gateway workers"
        sec.rows += [
            Row(f"throughput, {label}", f"{g.rps:,.0f} req/s", f"direct: {d.rps:,.0f} req/s", r_d, "≥ 70%", r_d >= 0.7),
            Row(f"throughput, {label}", f"{g.rps:,.0f} req/s", f"nginx: {n.rps:,.0f} req/s", r_n, "≥ 70%", r_n >= 0.7),
            Row(
                f"p50 / p99 at 32 conns, {label}",
                f"{g.p50_ms:.2f} / {g.p99_ms:.2f} ms",
                f"direct: {d.p50_ms:.2f} / {d.p99_ms:.2f} ms; nginx: {n.p50_ms:.2f} / {n.p99_ms:.2f} ms",
                g.p50_ms / d.p50_ms,
            ),
            Row(
                f"p50 added at 1 conn, {label}",
                f"{added:.2f} ms (gateway p50 {lat['gateway'].p50_ms:.2f}, p99 {lat['gateway'].p99_ms:.2f})",
                f"direct p50 {lat['direct'].p50_ms:.2f} ms; "
                f"nginx adds {lat['nginx'].p50_ms - lat['direct'].p50_ms:.2f} ms",
                None,
                "≤ 1 ms",
                added <= 1.0,
            ),
        ]
    return sec
