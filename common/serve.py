"""Run one process of the system: `python -m common.serve <name> [--factory module:callable]`.

`<name>` is a service of `common.contracts.topology` (or the gateway), whose manifest gives the app
factory (`--factory` runs another, e.g. a test's stand-in); without it, `SERVICE_NAME` is used, which
is how the container image starts whichever service its environment names. Settings come from the
environment only. The server is `common.http.server`'s (aiohttp's, answering unparsable requests in the
SPEC error shape). SIGTERM and SIGINT make it stop accepting connections, give in-flight requests
`SHUTDOWN_TIMEOUT_S` to finish, then run the cleanup contexts (consumers drain, the outbox relays its
last rows, pools close) before the process exits with status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from collections.abc import Callable

import structlog
from aiohttp import web

from common.contracts.topology import load_factory, spec_for
from common.core.logging import configure_logging
from common.core.settings import Settings
from common.http.server import serving

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


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:  # not on every platform; the default loop is only ~20% slower
        return asyncio.new_event_loop
    return uvloop.new_event_loop


async def _serve(app: web.Application, settings: Settings, log: structlog.stdlib.BoundLogger) -> None:
    """Start, listen until SIGTERM or SIGINT, stop. A signal during start-up (migrations, connections)
    abandons it at once, as aiohttp's `run_app` does: nothing is served yet."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    main = asyncio.current_task()
    assert main is not None
    listening = False

    def on_signal() -> None:
        if not listening:
            main.cancel()
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    async with serving(app, settings, shutdown_timeout=SHUTDOWN_TIMEOUT_S):
        listening = True
        log.info("serve.listening", url=f"http://{settings.host}:{settings.port}", pid=os.getpid())
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    settings = Settings.from_env(service_name=args.name)
    configure_logging(args.name, settings.log_level, settings.log_format)
    log = structlog.get_logger("serve")
    factory = load_factory(args.factory) if args.factory else spec_for(args.name).app_factory()
    app = factory(settings)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner, contextlib.suppress(asyncio.CancelledError):
            runner.run(_serve(app, settings, log))
    except Exception:
        # One log line (its traceback inside), so `swarm up`, which shows a dead child's last lines, shows why.
        log.exception("serve.failed")
        raise SystemExit(1) from None
    log.info("serve.stopped")


if __name__ == "__main__":
    main()
