"""The tables messaging keeps in every service's database: the outbox (`common.messaging.outbox`) and the
inbox of applied event ids (`common.messaging.apply`), created by the migrations beside this module.

Applied under the migration namespace `common` (the name they were first recorded under), before the
service's own migrations (`common.http.contexts.database_context`).
"""

from __future__ import annotations

from pathlib import Path

COMMON_MIGRATIONS = Path(__file__).parent / "migrations"
