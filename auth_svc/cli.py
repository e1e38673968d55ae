"""`swarm users ...`: operator commands of auth_svc, run against a running system's database."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from auth_svc.schemas import ROLES
from auth_svc.service import AuthService, PasswordHasher
from auth_svc.tokens import TokenIssuer
from common.core.errors import NotFound
from common.core.settings import Settings
from common.db.pool import create_pool
from common.redis.client import make_redis
from common.service.runtime import Runtime
from common.swarm.state import NoSystemFound, resolve_settings

users_app = typer.Typer(help="Manage users (auth_svc).", no_args_is_help=True)


async def _promote(settings: Settings, username: str, role: str) -> dict:
    runtime = Runtime(settings)
    runtime.pool = await create_pool(settings.database_url, 1, 2)
    runtime.redis = make_redis(settings)
    try:
        # Only the role changes here: no tokens are minted, so the issuer needs no private key.
        issuer = TokenIssuer(b"", settings.jwt_issuer, settings.access_token_ttl_s, settings.refresh_token_ttl_s)
        service = AuthService(runtime, issuer, PasswordHasher(settings.password_hash_scheme))
        return await service.promote(username, role)
    finally:
        await runtime.pool.close()
        await runtime.redis.aclose()


@users_app.command()
def promote(
    username: Annotated[str, typer.Argument(help="The user to change.")],
    role: Annotated[str, typer.Option("--role", help=f"One of: {', '.join(ROLES)}.")] = "admin",
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Folder of a `swarm up` system.")] = None,
) -> None:
    """Give USERNAME a role (bootstrap the first admin). Publishes updateUser like any role change."""
    if role not in ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(ROLES)}", param_hint="--role")
    try:
        settings = resolve_settings("auth_svc", data_dir=data_dir, require=("redis_url", "database_url"))
        user = asyncio.run(_promote(settings, username, role))
    except (NoSystemFound, NotFound) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"{user['username']} is now {user['role']}")
