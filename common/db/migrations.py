"""The schema of a service's database: the ordered migration runner (and creating a database for `swarm up`).

Migrations are `NNN_name.sql` files applied in numeric order, each in its own transaction, recorded in
`schema_migrations` per namespace (`common` for the outbox/inbox tables, then the service's own).
Two replicas starting at once serialize on a PostgreSQL advisory lock, so each file runs exactly once;
an applied file whose text changed afterwards stops start-up instead of silently diverging.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import structlog

log = structlog.get_logger("db")

_MIGRATION_FILE = re.compile(r"^(\d+)_([\w\-]+)\.sql$")
# Arbitrary but fixed: every Taskswarm process contends for the same lock id in its own database.
_MIGRATION_LOCK_ID = 0x7A5C_5A12


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Migration:
    namespace: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(namespace: str, directory: Path) -> list[Migration]:
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_FILE.fullmatch(path.name)
        if not match:
            raise MigrationError(f"migration file {path} is not named NNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations with version {version} in {directory}")
        found[version] = Migration(namespace, version, match.group(2), path.read_text())
    return [found[v] for v in sorted(found)]


async def ensure_database(admin_dsn: str, name: str) -> None:
    """Create database `name` on the server of `admin_dsn` unless it exists (embedded/dev set-ups)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):  # a concurrent creator won
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def migrate(dsn: str, sources: list[tuple[str, Path]]) -> list[str]:
    """Apply pending migrations of every (namespace, directory) in order; return what was applied."""
    migrations = [m for namespace, directory in sources for m in discover(namespace, directory)]
    conn = await asyncpg.connect(dsn)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       namespace text NOT NULL,
                       version integer NOT NULL,
                       name text NOT NULL,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now(),
                       PRIMARY KEY (namespace, version))"""
            )
            rows = await conn.fetch("SELECT namespace, version, checksum FROM schema_migrations")
            applied = {(r["namespace"], r["version"]): r["checksum"] for r in rows}
            for migration in migrations:
                key = (migration.namespace, migration.version)
                if key in applied:
                    if applied[key] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.namespace}/{migration.version}_{migration.name} "
                            "changed after it was applied; add a new migration instead"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (namespace, version, name, checksum) VALUES ($1, $2, $3, $4)",
                        migration.namespace,
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
                label = f"{migration.namespace}/{migration.version:03d}_{migration.name}"
                applied_now.append(label)
                log.info("db.migration_applied", migration=label)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)
    finally:
        await conn.close()
    return applied_now
