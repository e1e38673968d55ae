"""`swarm demo`: fill a running system with sample users, projects, cards and comments, through the API.

Everything goes through the gateway like a client's requests would, so the demo also shows the events
flowing (`swarm streams`, notifications in each user's feed). Sample users share one password, printed
at the end, so you can log in as any of them. Writes that depend on another service's replica (adding a
member right after they registered, commenting on a card created a moment ago) are retried briefly:
that delay is the system's eventual consistency, a few milliseconds.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import typer
from rich.progress import Progress

from common.swarm.state import NoSystemFound, gateway_url

DEMO_PASSWORD = "taskswarm-demo"
STATUSES = ("todo", "in_progress", "review", "done")
PRIORITIES = ("low", "medium", "high", "urgent")
WORDS = ("login", "search", "export", "billing", "onboarding", "cache", "sync", "mobile", "reports", "alerts")
REPLICATION_WAIT_S = 5.0


class DemoError(RuntimeError):
    pass


class Client:
    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = f"{base}/api/v1"

    async def call(self, method: str, path: str, token: str | None = None, json: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.request(method, self.base + path, json=json, headers=headers) as response:
            body = await response.json() if response.content_type == "application/json" else None
            return response.status, body

    async def write(self, method: str, path: str, token: str, json: Any, *, replicated: bool = False) -> Any:
        """A 2xx body, or DemoError. `replicated`: a 404 may only mean another service has not caught up."""
        deadline = time.monotonic() + REPLICATION_WAIT_S
        while True:
            status, body = await self.call(method, path, token, json)
            if 200 <= status < 300:
                return body
            if not (replicated and status == 404 and time.monotonic() < deadline):
                raise DemoError(f"{method} {path} answered {status}: {body}")
            await asyncio.sleep(0.02)


async def fill(
    base: str, users: int, projects: int, cards: int, comments: int, seed: int, progress: Progress
) -> dict[str, Any]:
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:6]
    async with aiohttp.ClientSession() as http:
        api = Client(http, base)
        task = progress.add_task("users", total=users)
        people = []
        for n in range(users):
            name = f"demo_{run}_{n}"
            body = await api.write(
                "POST",
                "/auth/register",
                "",
                {"username": name, "email": f"{name}@example.com", "password": DEMO_PASSWORD},
            )
            people.append({"id": body["user"]["id"], "username": name, "token": body["access_token"]})
            progress.advance(task)
        task = progress.add_task("projects, members, cards, comments", total=projects * cards)
        made: dict[str, Any] = {"users": users, "projects": 0, "cards": 0, "comments": 0}
        for p in range(projects):
            owner = people[p % len(people)]
            team = [owner, *rng.sample([u for u in people if u is not owner], min(3, len(people) - 1))]
            project = await api.write("POST", "/projects", owner["token"], {"title": f"{rng.choice(WORDS)} {p}"})
            made["projects"] += 1
            for member in team[1:]:
                path = f"/projects/{project['id']}/members"
                await api.write("POST", path, owner["token"], {"user_id": member["id"]}, replicated=True)
            for c in range(cards):
                author = rng.choice(team)
                card = await api.write(
                    "POST",
                    f"/projects/{project['id']}/cards",
                    author["token"],
                    {
                        "title": f"{rng.choice(WORDS)} issue {c}",
                        "status": rng.choice(STATUSES),
                        "priority": rng.choice(PRIORITIES),
                        "assignee_id": rng.choice(team)["id"],
                    },
                )
                made["cards"] += 1
                for k in range(comments):
                    writer = rng.choice(team)
                    path = f"/cards/{card['id']}/comments"
                    await api.write("POST", path, writer["token"], {"body": f"note {k}"}, replicated=True)
                    made["comments"] += 1
                progress.advance(task)
    made["login"] = f"{people[0]['username']} / {DEMO_PASSWORD}"
    return made


def demo(
    users: Annotated[int, typer.Option(min=2, help="Users to register.")] = 8,
    projects: Annotated[int, typer.Option(min=1, help="Projects (each with up to 4 members).")] = 4,
    cards: Annotated[int, typer.Option(min=0, help="Cards per project.")] = 6,
    comments: Annotated[int, typer.Option(min=0, help="Comments per card.")] = 2,
    seed: Annotated[int, typer.Option(help="Random seed for titles, statuses and who does what.")] = 1,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Folder of a `swarm up` system.")] = None,
) -> None:
    """Fill a running system with sample users, projects, cards and comments (through the gateway)."""
    try:
        base = gateway_url(data_dir)
    except NoSystemFound as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    try:
        with Progress() as progress:
            made = asyncio.run(fill(base, users, projects, cards, comments, seed, progress))
    except (DemoError, aiohttp.ClientError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(
        f"made {made['users']} users, {made['projects']} projects, {made['cards']} cards, "
        f"{made['comments']} comments; log in as {made['login']}"
    )
