"""Replica checks: what `swarm check` compares, as each consuming service declares it in its manifest.

Every side of a check is a named query of one service's own database, declared by that service
(`ServiceManifest.check_queries`, the SQL in its store): no service reads another's tables, and
`swarm check` (`common.swarm.check`) asks each side and compares (SPEC §5: every replica ends equal to
its source).
- `Mirror`: the source's query and the replica's return comparable rows (the first `key_columns`
  identify a row); the report lists rows missing from the replica, unexpected in it, or different;
- `Invariant`: a query of one service whose rows are violations (e.g. duplicates).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Mirror:
    name: str
    source: str  # the service whose database holds the truth
    source_query: str  # the name of its query (in its manifest's check_queries)
    replica: str  # the service keeping the copy (the one declaring the check)
    replica_query: str
    key_columns: int = 1


@dataclass(frozen=True, slots=True)
class Invariant:
    name: str
    service: str
    query: str  # its query of violations: every row returned is one


Check = Mirror | Invariant
