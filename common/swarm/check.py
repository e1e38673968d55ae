"""The convergence checker (`swarm check`): does every replica equal its source?

SPEC §5 promises that after any crash, restart or replay every replica ends equal to its source. This
module is the mechanism that verifies it; what to compare is business knowledge, so each consuming
service declares it in its manifest (`replica_checks`, `common.contracts.checks`), each side a query
that the service owning the database declares (`check_queries`). This module asks each side and compares:
- `Mirror`: the source's rows and the replica's (the first `key_columns` identify a row); the report lists
  rows missing from the replica, rows the replica has that the source does not, and rows that differ;
- `Invariant`: every row of the query is a violation (e.g. duplicates).

Queries read committed data only; on a live system run the check once the workload is quiet (events
in flight show as differences until they land), or use `wait_converged`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from common.contracts import topology
from common.contracts.checks import Check, Mirror
from common.contracts.manifest import ManifestError
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


@dataclass(frozen=True, slots=True)
class CheckPlan:
    """The checks to run, and the SQL of every query they name, by (service, query name)."""

    checks: list[Check]
    queries: dict[tuple[str, str], str]


def declared_checks(services: Iterable[str]) -> CheckPlan:
    """The replica checks the manifests of the given services declare (a service whose package is not
    here has none), with the queries they name, their sources' included. A check naming a query that a
    service present does not declare is a ManifestError: it would otherwise never run."""
    names = list(services)
    checks: list[Check] = []
    for name in names:
        spec = topology.spec_for(name)
        if spec.importable():
            checks.extend(spec.manifest().replica_checks)
    sides = {side for check in checks for side in _sides(check)}
    queries: dict[tuple[str, str], str] = {}
    missing = []
    for service in sorted({service for service, _ in sides}):
        spec = topology.spec_for(service)
        if not spec.importable():
            continue  # its checks are skipped at run time: nothing here can read its database
        declared = spec.manifest().queries()
        for side_service, query in sides:
            if side_service != service:
                continue
            if query in declared:
                queries[side_service, query] = declared[query]
            else:
                missing.append(f"{service} declares no check query {query!r}")
    if missing:
        raise ManifestError("; ".join(sorted(missing)))
    return CheckPlan(checks, queries)


def _sides(check: Check) -> list[tuple[str, str]]:
    if isinstance(check, Mirror):
        return [(check.source, check.source_query), (check.replica, check.replica_query)]
    return [(check.service, check.query)]


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


async def run_checks(database_urls: Mapping[str, str], plan: CheckPlan) -> Report:
    """Run the checks of `plan` against the services' databases (service name → DSN)."""
    report = Report()
    connections: dict[str, asyncpg.Connection] = {}

    async def conn_of(service: str) -> asyncpg.Connection:
        if service not in connections:
            connections[service] = await connect(database_urls[service])
        return connections[service]

    async def rows(service: str, query: str) -> list[tuple[Any, ...]]:
        sql = plan.queries[service, query]
        return [tuple(record) for record in await (await conn_of(service)).fetch(sql)]

    try:
        for check in plan.checks:
            sides = _sides(check)
            absent = [service for service, _ in sides if service not in database_urls]
            if absent:
                report.skipped[check.name] = f"no database for {', '.join(absent)}"
                continue
            unknown = [service for service, query in sides if (service, query) not in plan.queries]
            if unknown:
                report.skipped[check.name] = f"no manifest of {', '.join(unknown)} here"
                continue
            if isinstance(check, Mirror):
                source = await rows(check.source, check.source_query)
                replica = await rows(check.replica, check.replica_query)
                report.checked[check.name] = len(source)
                report.findings += compare(check.name, source, replica, check.key_columns)
            else:
                violations = await rows(check.service, check.query)
                report.checked[check.name] = len(violations)
                report.findings += [Finding(check.name, "violation", row) for row in violations]
    finally:
        await asyncio.gather(*(c.close() for c in connections.values()), return_exceptions=True)
    return report


async def wait_converged(
    database_urls: Mapping[str, str], plan: CheckPlan, timeout_s: float = 10.0, interval_s: float = 0.1
) -> Report:
    """Re-run the checks until they are clean or `timeout_s` passed; return the last report."""
    deadline = time.monotonic() + timeout_s
    while True:
        report = await run_checks(database_urls, plan)
        if report.clean or time.monotonic() > deadline:
            return report
        await asyncio.sleep(interval_s)
