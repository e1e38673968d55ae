"""The connection pool every service uses, against a real PostgreSQL."""

from __future__ import annotations

import asyncio

from common.db import create_pool


async def test_releasing_a_pooled_connection_sends_no_reset_query(database_url):
    pool = await create_pool(database_url, 1, 1)
    try:
        queries: list[str] = []
        async with pool.acquire() as conn:
            conn.add_query_logger(lambda record: queries.append(record.query))
            await conn.fetchval("SELECT 1")
        await asyncio.sleep(0.05)  # loggers are called back on the loop; let any reset query's run
        assert queries == ["SELECT 1"]  # asyncpg's default would add its RESET ALL / UNLISTEN * round trip
    finally:
        await pool.close()


async def test_a_transaction_left_open_is_still_rolled_back_on_release(database_url):
    pool = await create_pool(database_url, 1, 1)
    try:
        await pool.execute("CREATE TABLE abandoned (n int)")
        async with pool.acquire() as conn:
            await conn.execute("BEGIN; INSERT INTO abandoned VALUES (1)")  # never committed
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM abandoned") == 0
    finally:
        await pool.close()
