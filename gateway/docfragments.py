"""The services' parts of the gateway's OpenAPI document, written ahead of time: `gateway/openapi/<service>.json`,
committed, shipped as package data, and read by `gateway.apidocs` at start-up, so the gateway process
describes the services' routes without importing their handlers, use cases or stores (issue 14).

Each fragment is what the builder of `common.docs.openapi` makes of one service's route table and `@doc`s,
seen through the gateway: paths moved under `/api/v1` the way `gateway.routing` routes them
(`public_path`), plus the errors the gateway itself may answer there (`gateway_errors`: 429, 502-504).

Why committed fragments rather than light per-service route declarations the gateway could import: the
routes and their `@doc`s stay next to the handlers, in one place, built by the same code as before; only
*when* it runs moves (here, at write time). Keeping them fresh is one test
(tests/common/docs/test_docfragments.py: regenerated fragments equal the committed ones, and the gateway's
merged document equals the one built the old way, in one builder). Regenerate after changing a route,
a `@doc`, a schema or the routing table:

    python -m gateway.docfragments          # rewrite gateway/openapi/*.json
    python -m gateway.docfragments --check  # only say whether they are up to date

This module imports the services (through their manifests' `routes`), so the running gateway never imports
it: `gateway.apidocs` reads the JSON files only.
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from common.contracts import topology
from common.docs.openapi import OpenAPIBuilder
from gateway.apidocs import DESCRIPTION, FRAGMENTS_DIR, TAGS, fragment_path
from gateway.routing import API_PREFIX, ROUTES, Access, Router, access_of


def public_path(service: str, path: str) -> str | None:
    """Where the gateway exposes `service`'s `path`, or None when no rule routes it there."""
    for rule in ROUTES:
        if rule.service == service and rule.rewrite is not None:
            if path == rule.rewrite or path.startswith(rule.rewrite + "/"):
                return API_PREFIX + rule.prefix + path[len(rule.rewrite) :]
    concrete = re.sub(r"{[^}]+}", "x", path)
    target = Router({name: ("http://unused",) for name in {rule.service for rule in ROUTES}}).resolve(concrete)
    if target is None or target.replicas.service != service or target.path != concrete:
        return None
    return API_PREFIX + path


def gateway_errors(method: str, path: str, secured: bool) -> dict[int, str]:
    """What the gateway itself may answer on a proxied path, besides what the service documents."""
    access = access_of(method, path.removeprefix(API_PREFIX))
    extra = {
        502: "the service answered badly (`bad_gateway`)",
        503: "the service, or a dependency of it, is unavailable; retry",
        504: "the service did not answer in time (`gateway_timeout`)",
    }
    if access is Access.TOKEN:
        extra[429] = "rate limited per user: retry after `Retry-After` seconds"
    elif access is Access.PUBLIC_PER_IP:
        extra[429] = "rate limited per client IP: retry after `Retry-After` seconds"
    return extra


def add_service(builder: OpenAPIBuilder, service: str) -> None:
    """Add `service`'s documented routes, as the gateway exposes them (imports the service's api)."""
    add_routes = topology.manifest_of(service).routes
    assert add_routes is not None, f"{service} declares no routes"
    routes = web.Application()  # a bare app: only to collect the service's route table
    add_routes()(routes)
    builder.tag(service, TAGS.get(service, service))
    builder.add_router(
        routes.router,
        tag=service,
        path_of=functools.partial(public_path, service),
        extra_errors=gateway_errors,
    )


def fragment(service: str) -> dict[str, Any]:
    """The part of the gateway's document `service` brings: its paths, the components they use, its tag."""
    builder = OpenAPIBuilder("Taskswarm API", description=DESCRIPTION)
    add_service(builder, service)
    document = builder.to_dict()
    return {key: document[key] for key in ("paths", "components", "tags")}


def routed_services() -> tuple[str, ...]:
    """Every service here whose manifest declares routes: each has a fragment."""
    return tuple(spec.name for spec in topology.services() if spec.manifest().routes is not None)


def render(service: str) -> bytes:
    return orjson.dumps(fragment(service), option=orjson.OPT_INDENT_2) + b"\n"


def stale() -> list[Path]:
    """The fragment files that differ from what the code makes now (or are missing, or left over)."""
    wanted = {fragment_path(service): render(service) for service in routed_services()}
    present = set(FRAGMENTS_DIR.glob("*.json"))
    out = [path for path, body in wanted.items() if not path.is_file() or path.read_bytes() != body]
    return sorted(out + [path for path in present if path not in wanted])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.docfragments", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether the fragments are up to date")
    args = parser.parse_args(argv)
    outdated = stale()
    if args.check:
        for path in outdated:
            print(f"{path}: out of date; run python -m gateway.docfragments")
        return 1 if outdated else 0
    FRAGMENTS_DIR.mkdir(exist_ok=True)
    services = set(routed_services())
    for path in outdated:
        if path.stem in services:
            path.write_bytes(render(path.stem))
            print(f"{path}: rewritten")
        else:
            path.unlink()
            print(f"{path}: removed (no such service)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
