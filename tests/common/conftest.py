from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from common.db.migrations import migrate
from common.db.pool import create_pool
from common.messaging.tables import COMMON_MIGRATIONS

THINGS_TABLE = """
CREATE TABLE IF NOT EXISTS things (
    event_id uuid PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a fresh database with the common tables and a `things` table for test handlers."""
    await migrate(database_url, [("common", COMMON_MIGRATIONS)])
    pool = await create_pool(database_url, 1, 10)
    await pool.execute(THINGS_TABLE)
    yield pool
    await pool.close()
