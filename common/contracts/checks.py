"""Replica checks: what `swarm check` compares, as each consuming service declares it (SPEC §5).

- `Mirror`: a query on the source service's database and one on the replica's, returning comparable
  rows (the first `key_columns` identify a row);
- `Invariant`: a query on one service's database whose rows are violations (e.g. duplicates).
The comparison itself is `common.swarm.check`'s.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Mirror:
    name: str
    source: str  # the service whose database holds the truth
    source_sql: str
    replica: str  # the service keeping the copy
    replica_sql: str
    key_columns: int = 1


@dataclass(frozen=True, slots=True)
class Invariant:
    name: str
    service: str
    violations_sql: str  # every row returned is a violation


Check = Mirror | Invariant
