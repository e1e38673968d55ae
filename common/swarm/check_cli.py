"""`swarm check`: compare every replica with its source on a running system (common/swarm/check.py).

Exit code 0 when clean, 1 when something differs (or the system cannot be found), so scripts and CI
can gate on it. `--wait S` re-runs the checks for up to S seconds first, for a system that just
finished a workload and still has events in flight.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from common.contracts import topology
from common.swarm.check import Report, declared_checks, run_checks, wait_converged
from common.swarm.state import default_data_dir, load_state, state_path


def database_urls(data_dir: Path, overrides: list[str]) -> dict[str, str]:
    """Service → database DSN: what `swarm up` recorded, then `SERVICE=DSN` overrides."""
    urls: dict[str, str] = {}
    state = load_state(data_dir)
    if state is not None:
        urls.update({name: svc.database_url for name, svc in state.services.items() if svc.database_url})
    for item in overrides:
        name, sep, dsn = item.partition("=")
        if not sep or not dsn:
            raise typer.BadParameter(f"{item!r}: expected SERVICE=DSN", param_hint="--database")
        urls[name.strip()] = dsn.strip()
    if not urls:
        raise typer.BadParameter(
            f"no databases known: {state_path(data_dir)} does not exist; start `swarm up` or pass --database SVC=DSN"
        )
    return urls


def print_report(report: Report, console: Console) -> None:
    table = Table(title="replica checks", show_lines=False)
    table.add_column("check")
    table.add_column("rows", justify="right")
    table.add_column("result")
    failing = {finding.check for finding in report.findings}
    for name, rows in report.checked.items():
        verdict = "[red]differs[/red]" if name in failing else "[green]ok[/green]"
        table.add_row(name, str(rows), verdict)
    for name, why in report.skipped.items():
        table.add_row(name, "-", f"[yellow]skipped[/yellow] ({why})")
    console.print(table)
    for finding in report.findings:
        details = {"source": finding.source, "replica": finding.replica}
        shown = ", ".join(f"{k}={list(v)}" for k, v in details.items() if v is not None)
        console.print(f"[red]{finding.check}[/red] {finding.kind} {list(finding.key)}: {shown}")
    console.print("[green]clean[/green]" if report.clean else f"[red]{len(report.findings)} difference(s)[/red]")


def check(
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Folder of a `swarm up` system.")] = None,
    database: Annotated[
        list[str] | None, typer.Option("--database", help="SERVICE=DSN, for a system not started by `swarm up`.")
    ] = None,
    wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for convergence before reporting.")] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Compare every replica with its source (users, projects, members, cards, comment counts, notifications)."""
    urls = database_urls(data_dir or default_data_dir(), database or [])
    plan = declared_checks(spec.name for spec in topology.services())
    if wait > 0:
        report = asyncio.run(wait_converged(urls, plan, timeout_s=wait))
    else:
        report = asyncio.run(run_checks(urls, plan))
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        print_report(report, Console(soft_wrap=True))
    raise typer.Exit(0 if report.clean else 1)
