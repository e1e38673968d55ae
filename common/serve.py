"""Run one process of the system: `python -m common.serve <name> [--factory module:callable]`.

`<name>` is a service of `common.contracts.topology` (or the gateway), whose manifest gives the app
factory (`--factory` runs another, e.g. a test's stand-in); without it, `SERVICE_NAME` is used, which
is how the container image starts whichever service its environment names. Settings come from the
environment only. SIGTERM and SIGINT make aiohttp stop accepting connections, give in-flight requests
`SHUTDOWN_TIMEOUT_S` to finish, then run the cleanup contexts (consumers drain, the outbox relays its
last rows, pools close) before the process exits with status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os

import structlog
from aiohttp import web

from common.contracts.topology import load_factory, spec_for
from common.core.logging import configure_logging
from common.core.settings import Settings

# Requests take milliseconds; long polls are the only slow ones, and their clients retry. A short drain
# keeps `swarm up`'s stop (and a rolling restart) quick while letting ordinary requests finish.
SHUTDOWN_TIMEOUT_S = 5.0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m common.serve", description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", default=os.environ.get("SERVICE_NAME"), help="service to run")
    parser.add_argument("--factory", help="app factory 'module:callable' (default: the service's manifest's)")
    args = parser.parse_args(argv)
    if not args.name:
        parser.error("name the service to run, or set SERVICE_NAME")
    return args


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # not on every platform; the default loop is only ~20% slower
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    settings = Settings.from_env(service_name=args.name)
    configure_logging(args.name, settings.log_level, settings.log_format)
    log = structlog.get_logger("serve")
    factory = load_factory(args.factory) if args.factory else spec_for(args.name).app_factory()
    app = factory(settings)

    def listening(*_: object, **__: object) -> None:
        log.info("serve.listening", url=f"http://{settings.host}:{settings.port}", pid=os.getpid())

    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        access_log=None,  # the request middleware logs one structured line per request
        print=listening,
        handle_signals=True,
        reuse_port=settings.reuse_port or None,
        loop=_new_loop(),
    )
    log.info("serve.stopped")


if __name__ == "__main__":
    main()
