"""3. Propagation latency at a steady 200 writes/s: comment 201 → the card's total_comments shows it;
card created → the member's notification readable."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from bench import profile
from bench.client import Api
from bench.cpu import CpuMeter
from bench.report import Row, Section
from bench.system import Servers, swarm
from common.testing import service_urls

RATE = int(os.environ.get("BENCH_PROPAGATION_RATE", "200"))  # writes/s, half comments and half card creations
TARGET_P99_MS = 25.0
LOW_RATE = 50  # the same measurement well below saturation, for comparison


async def _retry(coro_factory: Any, seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await coro_factory()
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


def _backoff(t0: float) -> float:
    """Poll every 2 ms for the first 50 ms, then slower: pollers of a lagging system must not pile up load."""
    return 0.002 if time.perf_counter() - t0 < 0.05 else 0.02


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, round(q * (len(v) - 1)))]


async def _lags(redis_url: str) -> dict[str, int]:
    """Entries each group has not yet acknowledged or read, per stream (at the end of the write load)."""
    r = aioredis.from_url(redis_url, decode_responses=True)
    out: dict[str, int] = {}
    try:
        async for stream in r.scan_iter(match="events:*", _type="stream"):
            for g in await r.xinfo_groups(stream):
                behind = int(g.get("lag") or 0) + int(g.get("pending") or 0)
                if behind:
                    out[f"{g['name']} on {stream}"] = behind
    finally:
        await r.aclose()
    return out


async def _measure(
    gateway_url: str,
    project_url: str,
    notif_url: str,
    seconds: float,
    probe_every: int,
    rate: int,
    redis_url: str,
    pids: dict[str, int],
    profile_labels: tuple[str, ...] = (),
) -> dict[str, Any]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        api = Api(http, gateway_url)
        owner = await api.register("owner")
        member = await api.register("member")
        project = await api.project(owner)
        await _retry(lambda: api.ok("POST", f"/projects/{project}/members", owner, json={"user_id": member.id}))
        load_cards = [await api.card(owner, project, f"load {i}") for i in range(20)]
        probe_cards = [await api.card(owner, project, f"probe {i}") for i in range(40)]
        for c in load_cards + probe_cards:  # comment_svc knows every card before the run starts
            await _retry(lambda c=c: api.ok("POST", f"/cards/{c}/comments", owner, json={"body": "warm"}))
        counts = {c: 1 for c in load_cards + probe_cards}

        comment_lat: list[float] = []
        notif_lat: list[float] = []
        failures: list[str] = []
        write_lat: list[float] = []

        async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            t = time.perf_counter()
            async with http.post(api.base + path, json=body, headers=owner.auth) as r:
                data = await r.json()
                if r.status != 201:
                    raise RuntimeError(f"POST {path} → {r.status} {data}")
            write_lat.append(time.perf_counter() - t)
            return data  # type: ignore[no-any-return]

        async def comment(card: str, probe: bool) -> None:
            counts[card] += 1
            expected = counts[card]
            await post(f"/cards/{card}/comments", {"body": "bench comment"})
            if not probe:
                return
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 5:
                async with http.get(f"{project_url}/cards/{card}", headers=owner.auth) as r:
                    if (await r.json())["total_comments"] >= expected:
                        comment_lat.append(time.perf_counter() - t0)
                        return
                await asyncio.sleep(_backoff(t0))
            failures.append("comment not visible within 5 s")

        etag: dict[str, str] = {}

        async def card(i: int, probe: bool) -> None:
            created = await post(f"/projects/{project}/cards", {"title": f"card {i}"})
            if not probe:
                return
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 5:
                headers = {**member.auth, **({"If-None-Match": etag["v"]} if "v" in etag else {})}
                async with http.get(f"{notif_url}/notifications", headers=headers, params={"limit": "50"}) as r:
                    if r.status == 200:
                        etag["v"] = r.headers.get("ETag", "")
                        if any(n.get("card_id") == created["id"] for n in (await r.json())["items"]):
                            notif_lat.append(time.perf_counter() - t0)
                            return
                await asyncio.sleep(_backoff(t0))
            failures.append("notification not readable within 5 s")

        meter = CpuMeter(pids) if pids else None
        profiles = {k: profile.start(pids[k], seconds) for k in profile_labels if k in pids}
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[None]] = []
        total = int(seconds * rate)
        interval = 1.0 / rate
        start = loop.time()
        for i in range(total):
            delay = start + i * interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            n = i // 2
            probe = n % probe_every == 0
            if i % 2 == 0:
                target = (
                    probe_cards[(n // probe_every) % len(probe_cards)] if probe else load_cards[n % len(load_cards)]
                )
                tasks.append(asyncio.create_task(comment(target, probe)))
            else:
                tasks.append(asyncio.create_task(card(i, probe)))
        sent_s = loop.time() - start
        cpu_shares = meter.shares(sent_s) if meter else {}
        lag = await _lags(redis_url)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        profiled = {k: profile.finish(h) for k, h in profiles.items()}
        errors = [r for r in results if isinstance(r, BaseException)]
        return {
            "comment": comment_lat,
            "notif": notif_lat,
            "writes": total,
            "rate": total / sent_s,
            "write_lat": write_lat,
            "errors": errors,
            "failures": failures,
            "cpu": cpu_shares,
            "lag": lag,
            "profiles": profiled,
        }


def run(srv: Servers, quick: bool) -> Section:
    seconds = 10 if quick else 30
    sec = Section(
        "propagation",
        "3. Propagation latency at a steady 200 writes/s",
        f"For {seconds} s the benchmark process (aiohttp, open loop: a write is started every 5 ms whatever the "
        "answers) creates, through the gateway, 100 comments/s and 100 cards/s in one project with two members. "
        "Every 10th comment and every 10th card is a probe: from its 201 the benchmark polls "
        "(every 2 ms for 50 ms, then every 20 ms; straight "
        "at the service, so the poll does not queue behind the gateway) the card's `total_comments` in project_svc, "
        "resp. the other member's feed in notif_svc (with `If-None-Match`), until the change shows. "
        "Reference: the write's own latency (201 round trip through the gateway) in the same run. The same is "
        f"run first at {LOW_RATE} writes/s, below saturation, to separate propagation from queueing.",
    )

    rates = [LOW_RATE, RATE]
    with swarm(srv) as s:
        urls = service_urls(s)
        pids = {c.label: c.pid for c in s.children if c.pid}
        runs = {
            rate: asyncio.run(
                _measure(
                    str(s.gateway_url),
                    urls["project_svc"][0],
                    urls["notif_svc"][0],
                    seconds,
                    10,
                    rate,
                    s.redis_url,
                    pids,
                    ("project_svc.1", "notif_svc.1") if rate == RATE else (),
                )
            )
            for rate in rates
        }
    ms = lambda xs: [x * 1000 for x in xs]  # noqa: E731
    for rate in rates:
        res = runs[rate]
        c, n, w = ms(res["comment"]), ms(res["notif"]), ms(res["write_lat"])
        w50, w99 = _pct(w, 0.5), _pct(w, 0.99)
        for name, xs in (("comment 201 → total_comments", c), ("card 201 → member's notification", n)):
            p50, p99 = _pct(xs, 0.5), _pct(xs, 0.99)
            sec.rows.append(
                Row(
                    f"{rate} writes/s: {name}, p50 / p99 ({len(xs)} probes)",
                    f"{p50:.1f} / {p99:.1f} ms",
                    f"write 201 latency: {w50:.1f} / {w99:.1f} ms",
                    p99 / w99 if w99 else None,
                    f"p99 ≤ {TARGET_P99_MS:.0f} ms" if rate == RATE else "",
                    p99 <= TARGET_P99_MS if rate == RATE else None,
                )
            )
        sec.notes.append(
            f"At {rate} writes/s: {res['writes']:,} writes sent at {res['rate']:.0f}/s; mean write latency "
            f"{statistics.fmean(w) if w else float('nan'):.1f} ms; {len(res['errors'])} failed writes; "
            f"{len(res['failures'])} probes never saw their change within 5 s (left out of the percentiles). "
            f"CPU (cores) during the load: {CpuMeter.describe(res['cpu'])}. "
            f"Consumer groups behind when the load stopped: "
            f"{', '.join(f'{k}: {v}' for k, v in res['lag'].items()) or 'none'}."
        )
        if res["errors"]:
            sec.notes.append(f"First failed write: {res['errors'][0]!r}")
        for label, text in res["profiles"].items():
            sec.notes.append(f"Profile of {label} during the {rate} writes/s load (on-CPU samples only):\n\n{text}")
    return sec
