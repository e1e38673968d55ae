"""`GET /health` of the gateway: the readiness of everything behind it, in one answer.

Every configured replica's `/ready` is asked at once with a short timeout, and the gateway's own
dependency (Redis: no token can be checked without its deny-list) is checked alongside. 200 only
when all are ready; otherwise 503, so `swarm up`, docker-compose and load balancers can wait on this
one URL.

The URL is public, so what it says depends on who asks. Anyone gets the overall status
(`{"status": "ok" | "degraded"}`); an admin (a valid access token with role admin or superadmin) also
gets which service and replica is failing and why, by internal URL: the map of the system behind the
gateway is for operators, not for the internet.

The probes are shared: one round of them answers every `/health` that arrives while it runs, and its
result answers the ones in the next `CACHE_S` too, so a flood of `/health` costs at most one `/ready`
per replica per `CACHE_S`, not one per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from common.core.errors import AppError
from common.http.app import REQUEST_ID, REQUEST_ID_HEADER, RUNTIME, json_response, public
from common.service.runtime import ReadinessCheck
from common.service.tokens import bearer_token
from gateway.proxy import GATEWAY

log = structlog.get_logger("gateway.health")

PROBE_TIMEOUT_S = 2.0
CACHE_S = 1.0
OK = "ok"

Report = dict[str, Any]


async def _probe(session: aiohttp.ClientSession, base_url: str, request_id: str) -> str:
    timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
    try:
        async with session.get(
            base_url + "/ready", timeout=timeout, headers={REQUEST_ID_HEADER: request_id}
        ) as response:
            return OK if response.status == 200 else f"not ready: HTTP {response.status}"
    except TimeoutError:
        return f"failing: no answer within {PROBE_TIMEOUT_S}s"
    except aiohttp.ClientError as exc:
        return f"failing: {type(exc).__name__}"


async def _check(check: ReadinessCheck) -> str:
    try:
        await asyncio.wait_for(check(), PROBE_TIMEOUT_S)
    except Exception as exc:
        return f"failing: {type(exc).__name__}"
    return OK


async def _probe_everything(app: web.Application, request_id: str) -> Report:
    gateway = app[GATEWAY]
    own_checks = app[RUNTIME].readiness
    replicas = [(svc.service, url) for svc in gateway.router.services.values() for url in svc.urls]
    results = await asyncio.gather(
        *(_probe(gateway.proxy.session, url, request_id) for _, url in replicas),
        *(_check(check) for check in own_checks.values()),
    )
    by_service: dict[str, dict[str, str]] = {}
    for (service, url), result in zip(replicas, results[: len(replicas)], strict=True):
        by_service.setdefault(service, {})[url] = result
    services = {
        name: {"status": OK if all(r == OK for r in found.values()) else "failing", "replicas": found}
        for name, found in by_service.items()
    }
    own = dict(zip(own_checks, results[len(replicas) :], strict=True))
    healthy = all(result == OK for result in results)
    return {"status": OK if healthy else "degraded", "services": services, "gateway": own}


class SharedProbes:
    """The last report, kept `ttl_s`, and the round of probes in flight, which every caller awaits."""

    def __init__(self, ttl_s: float = CACHE_S) -> None:
        self._ttl_s = ttl_s
        self._report: Report | None = None
        self._taken_at = 0.0
        self._running: asyncio.Task[Report] | None = None

    async def report(self, probe: Callable[[], Awaitable[Report]]) -> Report:
        loop = asyncio.get_running_loop()
        if self._report is not None and loop.time() - self._taken_at < self._ttl_s:
            return self._report
        if self._running is None:
            self._running = asyncio.create_task(self._round(probe), name="health-probes")
        # Shielded: a caller that hangs up must not cancel the round the others are waiting for.
        return await asyncio.shield(self._running)

    async def _round(self, probe: Callable[[], Awaitable[Report]]) -> Report:
        try:
            report = await probe()
            self._report, self._taken_at = report, asyncio.get_running_loop().time()
            return report
        finally:
            self._running = None


SHARED_PROBES = web.AppKey("health_probes", SharedProbes)


async def _is_admin(request: web.Request) -> bool:
    """Whether the caller proved to be an admin. Any doubt (no token, a bad or revoked one, the deny-list
    unreachable) means no: the caller still gets the overall status."""
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        return False
    try:
        return (await request.app[RUNTIME].token_verifier().verify(token)).is_admin
    except AppError:
        return False


@public  # anyone gets the overall status; details need an admin's token, checked here
async def health(request: web.Request) -> web.Response:
    app = request.app
    request_id = request[REQUEST_ID]
    report = await app[SHARED_PROBES].report(lambda: _probe_everything(app, request_id))
    status = 200 if report["status"] == OK else 503
    if await _is_admin(request):
        return json_response(report, status=status)
    return json_response({"status": report["status"]}, status=status)
