"""`GET /health` of the gateway: the readiness of everything behind it, in one answer.

Every configured replica's `/ready` is asked at once with a short timeout, and the gateway's own
dependency (Redis: no token can be checked without its deny-list) is checked alongside. 200 only
when all are ready; otherwise 503, naming what is failing, so `swarm up` and orchestrators can wait
on this one URL and an operator sees at a glance which replica to look at.
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from common.http.app import REQUEST_ID, REQUEST_ID_HEADER, RUNTIME, json_response, public
from common.service.runtime import ReadinessCheck
from gateway.proxy import GATEWAY

PROBE_TIMEOUT_S = 2.0
OK = "ok"


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


@public
async def health(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    own_checks = request.app[RUNTIME].readiness
    replicas = [(svc.service, url) for svc in gateway.router.services.values() for url in svc.urls]
    request_id = request[REQUEST_ID]
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
    body = {"status": OK if healthy else "degraded", "services": services, "gateway": own}
    return json_response(body, status=200 if healthy else 503)
