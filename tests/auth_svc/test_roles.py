"""Role changes: admins only, and only a superadmin grants or removes admin rights."""

from __future__ import annotations

from auth_svc.api import AUTH_SERVICE
from tests.helpers import bearer


async def promote(auth_client, user: dict, role: str) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """Bootstrap a role the way `swarm users promote` does, then log in again for a fresh token."""
    service = auth_client.server.app[AUTH_SERVICE]
    await service.promote(user["user"]["username"], role)
    response = await auth_client.post(
        "/auth/login", json={"username": user["user"]["username"], "password": user["password"]}
    )
    return {**user, **await response.json()}


async def change_role(auth_client, caller: dict, target: dict, role: str) -> int:  # type: ignore[no-untyped-def, type-arg]
    response = await auth_client.patch(
        f"/users/{target['user']['id']}/role", json={"role": role}, headers=bearer(caller["access_token"])
    )
    return response.status


async def test_a_plain_user_cannot_change_roles(auth_client, register):
    caller, target = await register(), await register()
    assert await change_role(auth_client, caller, target, "admin") == 403


async def test_an_admin_cannot_grant_or_remove_admin(auth_client, register):
    admin = await promote(auth_client, await register(), "admin")
    other_admin = await promote(auth_client, await register(), "admin")
    target = await register()
    assert await change_role(auth_client, admin, target, "admin") == 403
    assert await change_role(auth_client, admin, other_admin, "user") == 403


async def test_a_superadmin_grants_and_removes_admin(auth_client, register):
    boss = await promote(auth_client, await register(), "superadmin")
    target = await register()
    assert await change_role(auth_client, boss, target, "admin") == 200
    me = await auth_client.get(f"/users/{target['user']['id']}", headers=bearer(boss["access_token"]))
    assert (await me.json())["role"] == "admin"
    assert await change_role(auth_client, boss, target, "user") == 200


async def test_lowering_a_role_ends_the_users_sessions(auth_client, register):
    boss = await promote(auth_client, await register(), "superadmin")
    target = await promote(auth_client, await register(), "admin")
    assert await change_role(auth_client, boss, target, "user") == 200
    response = await auth_client.get("/users/me", headers=bearer(target["access_token"]))
    assert response.status == 401


async def test_nobody_changes_their_own_role_and_bad_roles_are_rejected(auth_client, register):
    boss = await promote(auth_client, await register(), "superadmin")
    assert await change_role(auth_client, boss, boss, "user") == 403
    assert await change_role(auth_client, boss, await register(), "emperor") == 400
