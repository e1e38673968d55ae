"""The convergence checker (`swarm check`): does every replica equal its source?

SPEC §5 promises that after any crash, restart or replay every replica ends equal to its source. This
module is the mechanism that verifies it; what to compare is business knowledge, so each consuming
service declares it next to its event handlers, as `REPLICA_CHECKS` in its `consumers.py`:
- `Mirror`: a query on the source service's database and one on the replica's, returning comparable
  rows (the first `key_columns` identify a row); the report lists rows missing from the replica,
  rows the replica has that the source does not, and rows that differ;
- `Invariant`: a query on one service's database whose rows are violations (e.g. duplicates).

Queries read committed data only; on a live system run the check once the workload is quiet (events
in flight show as differences until they land), or use `wait_converged`.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from common.contracts.checks import Check, Mirror
from common.db.pool import connect


@dataclass
class Finding:
    check: str
    kind: str  # missing | unexpected | different | violation
    key: tuple[Any, ...]
    source: tuple[Any, ...] | None = None
    replica: tuple[Any, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "kind": self.kind,
            "key": [_plain(v) for v in self.key],
            "source": None if self.source is None else [_plain(v) for v in self.source],
            "replica": None if self.replica is None else [_plain(v) for v in self.replica],
        }


@dataclass
class Report:
    checked: dict[str, int] = field(default_factory=dict)  # check name → rows compared
    skipped: dict[str, str] = field(default_factory=dict)  # check name → why (a service not running)
    findings: list[Finding] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "checked": self.checked,
            "skipped": self.skipped,
            "findings": [f.to_dict() for f in self.findings],
        }


def _plain(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def declared_checks(services: Iterable[str]) -> list[Check]:
    """The `REPLICA_CHECKS` of every given service's `consumers` module (services without one have none)."""
    checks: list[Check] = []
    for service in services:
        try:
            module = importlib.import_module(f"{service}.consumers")
        except ModuleNotFoundError:
            continue
        checks.extend(getattr(module, "REPLICA_CHECKS", ()))
    return checks


def compare(
    name: str, source: Sequence[tuple[Any, ...]], replica: Sequence[tuple[Any, ...]], key_columns: int
) -> list[Finding]:
    by_key_source = {row[:key_columns]: row for row in source}
    by_key_replica = {row[:key_columns]: row for row in replica}
    findings: list[Finding] = []
    for key, row in by_key_source.items():
        copy = by_key_replica.get(key)
        if copy is None:
            findings.append(Finding(name, "missing", key, source=row))
        elif copy != row:
            findings.append(Finding(name, "different", key, source=row, replica=copy))
    for key, copy in by_key_replica.items():
        if key not in by_key_source:
            findings.append(Finding(name, "unexpected", key, replica=copy))
    return findings


async def run_checks(database_urls: Mapping[str, str], checks: Iterable[Check]) -> Report:
    """Run `checks` against the services' databases (service name → DSN)."""
    report = Report()
    connections: dict[str, asyncpg.Connection] = {}

    async def conn_of(service: str) -> asyncpg.Connection:
        if service not in connections:
            connections[service] = await connect(database_urls[service])
        return connections[service]

    async def rows(service: str, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(record) for record in await (await conn_of(service)).fetch(sql)]

    try:
        for check in checks:
            services = (check.source, check.replica) if isinstance(check, Mirror) else (check.service,)
            absent = [s for s in services if s not in database_urls]
            if absent:
                report.skipped[check.name] = f"no database for {', '.join(absent)}"
                continue
            if isinstance(check, Mirror):
                source = await rows(check.source, check.source_sql)
                replica = await rows(check.replica, check.replica_sql)
                report.checked[check.name] = len(source)
                report.findings += compare(check.name, source, replica, check.key_columns)
            else:
                violations = await rows(check.service, check.violations_sql)
                report.checked[check.name] = len(violations)
                report.findings += [Finding(check.name, "violation", row) for row in violations]
    finally:
        await asyncio.gather(*(c.close() for c in connections.values()), return_exceptions=True)
    return report


async def wait_converged(
    database_urls: Mapping[str, str], checks: Sequence[Check], timeout_s: float = 10.0, interval_s: float = 0.1
) -> Report:
    """Re-run the checks until they are clean or `timeout_s` passed; return the last report."""
    deadline = time.monotonic() + timeout_s
    while True:
        report = await run_checks(database_urls, checks)
        if report.clean or time.monotonic() > deadline:
            return report
        await asyncio.sleep(interval_s)
