"""Entry point: `python -m bench.run [--quick] [--only NAME ...]` runs the benchmarks, rewrites bench/REPORT.md."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import time
import traceback

from bench.report import Section, write
from bench.system import servers, versions

# name → module; run in this order (the items 1, 4, 3 first, then 2, 5 and 6 in two parts).
BENCHMARKS = {
    "gateway": "bench.gateway_overhead",
    "consumer": "bench.consumer",
    "propagation": "bench.propagation",
    "writes": "bench.writes",
    "feed": "bench.feed",
    "scaling": "bench.scaling",
    "rows": "bench.rows",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs and smaller data (about 3 minutes)")
    parser.add_argument("--only", action="append", choices=list(BENCHMARKS), help="run only this one (repeatable)")
    args = parser.parse_args(argv)
    # Stopped with SIGTERM (a CI timeout, `kill`): unwind like Ctrl-C, so the embedded servers and the
    # swarm's processes are stopped by their context managers instead of being left behind.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    started = time.monotonic()
    sections: list[Section] = []
    with servers() as srv:
        env = versions(srv)
        for name in args.only or list(BENCHMARKS):
            print(f"bench: {name} ...", flush=True)
            t0 = time.monotonic()
            try:
                sec = importlib.import_module(BENCHMARKS[name]).run(srv, args.quick)
            except Exception as exc:  # one failing benchmark must not lose the others' figures
                traceback.print_exc()
                sec = Section(name, name, error=f"{type(exc).__name__}: {exc}")
            sec.seconds = time.monotonic() - t0
            sections.append(sec)
            for row in sec.rows:
                print(
                    f"  {row.figure}: {row.value} | {row.reference} | "
                    f"{'' if row.ratio is None else f'{row.ratio:.0%}'} {row.target} {row.met}",
                    flush=True,
                )
    shown = " ".join(a for a in sys.argv[1:]) if argv is None else " ".join(argv)
    path = write(sections, env, shown, time.monotonic() - started, order=list(BENCHMARKS), partial=bool(args.only))
    print(f"bench: wrote {path} in {time.monotonic() - started:.0f} s")
    return 1 if any(s.error for s in sections) else 0


if __name__ == "__main__":
    sys.exit(main())
