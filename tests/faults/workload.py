"""A workload of writes through the gateway, and the ledger of what it was told succeeded.

While faults are injected a request can fail three ways, and the ledger keeps them apart:
- 2xx: the write happened. It is recorded, and at the end it must be there (a "lost write" otherwise);
- 4xx: it did not happen (e.g. 404 for a card comment_svc has not replicated yet); nothing is recorded;
- 5xx, no answer, a timeout: it may or may not have happened. Nothing is assumed: a create is not
  recorded, and an entity whose update or delete is unknown is marked uncertain, so only that detail
  of it is not checked. Deletes are retried until they answer 204 or 404, which settles them.

`verify()` then reads everything back through the gateway (retrying reads that fail) and lists every
acknowledged write that is missing or different; `notification_gaps()` checks notif_svc's database.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

import aiohttp
import asyncpg

PASSWORD = "correct horse battery"
STATUSES = ("todo", "in_progress", "review", "done")

T = TypeVar("T")


class Outcome(Enum):
    DONE = "done"  # 2xx
    REFUSED = "refused"  # 4xx: certainly not done
    UNKNOWN = "unknown"  # 5xx or no answer: maybe done


@dataclass
class Reply:
    outcome: Outcome
    status: int  # 0: no answer
    body: Any


class Api:
    """Calls through the gateway that never raise: a connection error is a reply with status 0."""

    def __init__(self, http: aiohttp.ClientSession, gateway_url: str) -> None:
        self.http = http
        self.base = f"{gateway_url}/api/v1"
        self.statuses: Counter[int] = Counter()
        self.server_errors: list[str] = []  # 500s: a dependency outage should answer 503, not 500

    async def call(self, method: str, path: str, who: User | None = None, json: Any = None, **params: Any) -> Reply:
        headers = {"Authorization": f"Bearer {who.token}"} if who else {}
        try:
            async with self.http.request(method, self.base + path, json=json, headers=headers, params=params) as r:
                body = await r.json() if r.content_type == "application/json" else None
                status = r.status
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            self.statuses[0] += 1
            return Reply(Outcome.UNKNOWN, 0, repr(exc))
        self.statuses[status] += 1
        if status == 500 and len(self.server_errors) < 20:
            self.server_errors.append(f"{method} {path} → 500 {body}")
        if 200 <= status < 300:
            return Reply(Outcome.DONE, status, body)
        return Reply(Outcome.UNKNOWN if status >= 500 else Outcome.REFUSED, status, body)

    async def answers(self, count: int, *, succeeded: bool = False, timeout: float = 60.0) -> None:
        """Wait until the workload got `count` more answers (only 2xx ones with `succeeded`): a fault window
        measured in traffic that went through it, not in seconds the machine may spend elsewhere."""

        def seen() -> int:
            return sum(n for status, n in self.statuses.items() if not succeeded or 200 <= status < 300)

        target = seen() + count
        deadline = time.monotonic() + timeout
        while seen() < target:
            assert time.monotonic() < deadline, f"the workload made no progress: {dict(self.statuses)}"
            await asyncio.sleep(0.01)

    async def read(self, path: str, who: User, *, timeout: float = 15.0, **params: Any) -> Reply:
        """A GET, retried while it fails for reasons other than the answer (5xx, no connection)."""
        deadline = time.monotonic() + timeout
        while True:
            reply = await self.call("GET", path, who, **params)
            if reply.outcome is not Outcome.UNKNOWN or time.monotonic() > deadline:
                return reply
            await asyncio.sleep(0.1)

    async def all_pages(self, path: str, who: User) -> list[Any]:
        items: list[Any] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            reply = await self.read(path, who, **params)
            assert reply.outcome is Outcome.DONE, f"GET {path} → {reply.status} {reply.body}"
            items.extend(reply.body["items"])
            cursor = reply.body["next_cursor"]
            if cursor is None:
                return items


async def settle(attempt: Callable[[], Awaitable[Reply]], *, timeout: float = 30.0) -> Reply:
    """Repeat an idempotent write until its outcome is known (anything but 5xx / no answer)."""
    deadline = time.monotonic() + timeout
    while True:
        reply = await attempt()
        if reply.outcome is not Outcome.UNKNOWN or time.monotonic() > deadline:
            return reply
        await asyncio.sleep(0.1)


# -- the ledger -------------------------------------------------------------------------------------


@dataclass
class User:
    id: str
    username: str
    token: str
    email: str
    email_certain: bool = True


@dataclass
class Project:
    id: str
    owner: User
    members: set[str]
    deleted: bool = False
    members_certain: bool = True


@dataclass
class Card:
    id: str
    project_id: str
    creator_id: str
    status: str
    deleted: bool = False
    status_certain: bool = True


@dataclass
class Comment:
    id: str
    card_id: str
    author_id: str
    body: str
    deleted: bool = False
    certain: bool = True  # False: an edit or delete of it had an unknown outcome


@dataclass
class Ledger:
    users: dict[str, User] = field(default_factory=dict)
    projects: dict[str, Project] = field(default_factory=dict)
    cards: dict[str, Card] = field(default_factory=dict)
    comments: dict[str, Comment] = field(default_factory=dict)
    # Answers that contradict an acknowledged write at the moment they came (e.g. 404 for a comment
    # we were told exists): each is a lost write seen live.
    surprises: list[str] = field(default_factory=list)

    def acknowledged(self) -> dict[str, int]:
        return {
            "users": len(self.users),
            "projects": len(self.projects),
            "cards": len(self.cards),
            "comments": len(self.comments),
            "deleted comments": sum(c.deleted for c in self.comments.values()),
        }


# -- the workload -----------------------------------------------------------------------------------


@dataclass
class Team:
    project: Project
    people: list[User]
    doom_at: float | None = None  # monotonic time at which its owner deletes the project


class Workload:
    """Teams (an owner and members, one project each) working concurrently, and people signing up.

    Each team's writes are sequential (so "the last acknowledged status" of a card is well defined);
    teams run side by side. `start()` runs it in the background until `stop()`.
    """

    def __init__(
        self,
        api: Api,
        *,
        teams: int = 3,
        members: int = 2,
        seed: int = 0,
        pause_s: float = 0.01,
        doom_after_s: float | None = None,
    ) -> None:
        self.api = api
        self.doom_after_s = doom_after_s  # one more team, whose project is deleted this long into the run
        self.ledger = Ledger()
        self.teams_wanted = teams
        self.members_wanted = members
        self.random = random.Random(seed)
        self.pause_s = pause_s
        self.teams: list[Team] = []
        self.newcomers: list[User] = []  # signed up during the run, not in a team yet
        self.ops: Counter[str] = Counter()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[Any] | None = None

    # -- set-up, fault-free ---------------------------------------------------------------------------

    async def setup(self) -> None:
        """Users, one project per team with its members and two cards (before any fault)."""
        for _ in range(self.teams_wanted + (self.doom_after_s is not None)):
            owner = await self._must(self.register("owner"))
            people = [owner] + [await self._must(self.register("member")) for _ in range(self.members_wanted)]
            reply = await self.api.call("POST", "/projects", owner, json={"title": f"p-{uuid.uuid4().hex[:6]}"})
            assert reply.outcome is Outcome.DONE, reply
            project = Project(reply.body["id"], owner, {owner.id})
            self.ledger.projects[project.id] = project
            team = Team(project, people)
            for member in people[1:]:
                assert await self.add_member(team, member), f"could not add {member.username}"
            for _ in range(2):
                assert await self.create_card(team, owner), "could not create a card"
            self.teams.append(team)

    async def _must(self, attempt: Awaitable[User | None]) -> User:
        user = await attempt
        assert user is not None
        return user

    # -- running --------------------------------------------------------------------------------------

    def start(self) -> None:
        assert self._task is None
        self._task = asyncio.ensure_future(self.run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def run(self) -> None:
        if self.doom_after_s is not None:
            self.teams[-1].doom_at = time.monotonic() + self.doom_after_s
        await asyncio.gather(*(self._team_loop(team) for team in self.teams), self._people_loop())

    async def _pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), self.pause_s * (1 + self.random.random()))

    async def _team_loop(self, team: Team) -> None:
        operations: list[tuple[int, Callable[[Team], Awaitable[Any]]]] = [
            (4, self._op_card),
            (9, self._op_comment),
            (2, self._op_edit_comment),
            (2, self._op_delete_comment),
            (2, self._op_status),
            (1, self._op_delete_card),
            (1, self._op_add_newcomer),
        ]
        weights = [w for w, _ in operations]
        while not self._stop.is_set():
            if team.doom_at is not None and time.monotonic() >= team.doom_at:
                self.ops["delete_project"] += 1
                await self.delete_project(team)
                return
            [(_, operation)] = self.random.choices(operations, weights=weights)
            self.ops[operation.__name__.removeprefix("_op_")] += 1
            await operation(team)
            await self._pause()

    async def _people_loop(self) -> None:
        while not self._stop.is_set():
            if self.random.random() < 0.4:
                user = await self.register("newcomer")
                if user is not None:
                    self.newcomers.append(user)
            else:
                await self.change_email(self.random.choice(list(self.ledger.users.values())))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.15)

    # -- operations -----------------------------------------------------------------------------------

    async def register(self, prefix: str) -> User | None:
        username = f"{prefix}_{uuid.uuid4().hex[:8]}"
        email = f"{username}@example.com"
        reply = await self.api.call(
            "POST", "/auth/register", json={"username": username, "email": email, "password": PASSWORD}
        )
        if reply.outcome is not Outcome.DONE:
            return None
        user = User(reply.body["user"]["id"], username, reply.body["access_token"], email)
        self.ledger.users[user.id] = user
        return user

    async def change_email(self, user: User) -> None:
        email = f"{user.username}.{uuid.uuid4().hex[:4]}@example.org"
        reply = await self.api.call("PATCH", "/users/me", user, json={"email": email})
        if reply.outcome is Outcome.DONE:
            user.email = email  # still uncertain after an unknown outcome: that one may land later
        elif reply.outcome is Outcome.UNKNOWN:
            user.email_certain = False

    async def add_member(self, team: Team, user: User) -> bool:
        """Until it is settled: 201, or 409 (an earlier attempt with an unknown outcome made it)."""
        project = team.project

        async def attempt() -> Reply:
            reply = await self.api.call(
                "POST", f"/projects/{project.id}/members", project.owner, json={"user_id": user.id}
            )
            if reply.status == 404:  # project_svc has not replicated the new user yet
                return Reply(Outcome.UNKNOWN, 404, reply.body)
            return reply

        reply = await settle(attempt)
        if reply.outcome is Outcome.DONE or reply.status == 409:
            project.members.add(user.id)
            if user not in team.people:
                team.people.append(user)
            return True
        if reply.outcome is Outcome.UNKNOWN:
            project.members_certain = False
        return False

    async def create_card(self, team: Team, who: User) -> Card | None:
        assignee = self.random.choice([None, *[p.id for p in team.people]])
        status = self.random.choice(STATUSES)
        body = {"title": f"card {uuid.uuid4().hex[:6]}", "status": status, "assignee_id": assignee}
        reply = await self.api.call("POST", f"/projects/{team.project.id}/cards", who, json=body)
        if reply.outcome is not Outcome.DONE:
            return None
        card = Card(reply.body["id"], team.project.id, who.id, status)
        self.ledger.cards[card.id] = card
        return card

    def _live_cards(self, team: Team) -> list[Card]:
        return [c for c in self.ledger.cards.values() if c.project_id == team.project.id and not c.deleted]

    def _live_comments(self, team: Team) -> list[Comment]:
        cards = {c.id for c in self._live_cards(team)}
        return [c for c in self.ledger.comments.values() if c.card_id in cards and not c.deleted and c.certain]

    async def _op_card(self, team: Team) -> None:
        await self.create_card(team, self.random.choice(team.people))

    async def _op_comment(self, team: Team) -> None:
        cards = self._live_cards(team)
        if not cards:
            return
        card, author = self.random.choice(cards), self.random.choice(team.people)
        body = f"{author.username} says {uuid.uuid4().hex[:8]}"
        reply = await self.api.call("POST", f"/cards/{card.id}/comments", author, json={"body": body})
        if reply.outcome is Outcome.DONE:
            self.ledger.comments[reply.body["id"]] = Comment(reply.body["id"], card.id, author.id, body)

    async def _op_edit_comment(self, team: Team) -> None:
        comments = self._live_comments(team)
        if not comments:
            return
        comment = self.random.choice(comments)
        author = self.ledger.users[comment.author_id]
        body = f"{comment.body} (edited {uuid.uuid4().hex[:4]})"
        reply = await self.api.call("PATCH", f"/comments/{comment.id}", author, json={"body": body})
        if reply.outcome is Outcome.DONE:
            comment.body = body
        elif reply.outcome is Outcome.UNKNOWN:
            comment.certain = False
        elif reply.status == 404:
            self.ledger.surprises.append(f"PATCH /comments/{comment.id} → 404 for an acknowledged comment")

    async def _op_delete_comment(self, team: Team) -> None:
        comments = self._live_comments(team)
        if not comments:
            return
        comment = self.random.choice(comments)
        author = self.ledger.users[comment.author_id]
        reply = await self.delete(f"/comments/{comment.id}", author)
        if reply is None:
            comment.certain = False
        else:
            comment.deleted = True

    async def _op_status(self, team: Team) -> None:
        cards = self._live_cards(team)
        if not cards:
            return
        card = self.random.choice(cards)
        status = self.random.choice([s for s in STATUSES if s != card.status])
        reply = await self.api.call(
            "PATCH", f"/cards/{card.id}", self.random.choice(team.people), json={"status": status}
        )
        if reply.outcome is Outcome.DONE:
            card.status = status  # an earlier unknown outcome stays unknown: it may still land after this
        elif reply.outcome is Outcome.UNKNOWN:
            card.status_certain = False
        elif reply.status == 404:
            self.ledger.surprises.append(f"PATCH /cards/{card.id} → 404 for an acknowledged card")

    async def _op_delete_card(self, team: Team) -> None:
        cards = self._live_cards(team)
        if len(cards) < 3:
            return
        card = self.random.choice(cards)
        if await self.delete(f"/cards/{card.id}", team.project.owner) is not None:
            self._card_gone(card)

    def _card_gone(self, card: Card) -> None:
        card.deleted = True
        for comment in self.ledger.comments.values():
            if comment.card_id == card.id:
                comment.deleted = True

    async def delete(self, path: str, who: User) -> Reply | None:
        """DELETE something we were told exists, until settled; None if it never was.

        204 deletes it. 404 on the first try means an acknowledged entity was already gone: a lost
        write, noted. 404 after an attempt with an unknown outcome means that attempt deleted it.
        """
        first = await self.api.call("DELETE", path, who)
        if first.status == 404:
            self.ledger.surprises.append(f"DELETE {path} → 404 for an acknowledged entity")
        if first.outcome is not Outcome.UNKNOWN:
            return first if first.outcome is Outcome.DONE or first.status == 404 else None
        reply = await settle(lambda: self.api.call("DELETE", path, who))
        return reply if reply.outcome is Outcome.DONE or reply.status == 404 else None

    async def delete_project(self, team: Team) -> None:
        project = team.project
        if await self.delete(f"/projects/{project.id}", project.owner) is None:
            return
        project.deleted = True
        for card in self._live_cards(team):
            self._card_gone(card)

    async def _op_add_newcomer(self, team: Team) -> None:
        if self.newcomers:
            await self.add_member(team, self.newcomers.pop(0))

    # -- verification ---------------------------------------------------------------------------------

    async def verify(self) -> list[str]:
        """Every acknowledged write, read back through the gateway; what is missing or different."""
        problems = list(self.ledger.surprises)
        reader = next(iter(self.ledger.users.values()))
        for user in self.ledger.users.values():
            reply = await self.api.read(f"/users/{user.id}", reader)
            if reply.status != 200:
                problems.append(f"user {user.username}: GET → {reply.status}")
            elif user.email_certain and reply.body["email"] != user.email:
                problems.append(f"user {user.username}: email {reply.body['email']!r}, acknowledged {user.email!r}")
        for project in self.ledger.projects.values():
            reply = await self.api.read(f"/projects/{project.id}", project.owner)
            if project.deleted:
                if reply.status != 404:
                    problems.append(f"deleted project {project.id}: GET → {reply.status}")
                continue
            if reply.status != 200:
                problems.append(f"project {project.id}: GET → {reply.status}")
                continue
            members = {m["user_id"] for m in reply.body["members"]}
            if not project.members <= members or (project.members_certain and members != project.members):
                problems.append(
                    f"project {project.id}: members {sorted(members)}, acknowledged {sorted(project.members)}"
                )
        for card in self.ledger.cards.values():
            problems += await self._verify_card(card)
        return problems

    async def _verify_card(self, card: Card) -> list[str]:
        owner = self.ledger.projects[card.project_id].owner
        reply = await self.api.read(f"/cards/{card.id}", owner)
        comments = [c for c in self.ledger.comments.values() if c.card_id == card.id]
        if card.deleted:
            problems = [] if reply.status == 404 else [f"deleted card {card.id}: GET → {reply.status}"]
            for comment in comments:
                gone = await self.api.read(f"/comments/{comment.id}", owner)
                if gone.status != 404:
                    problems.append(f"comment {comment.id} of deleted card {card.id}: GET → {gone.status}")
            return problems
        if reply.status != 200:
            return [f"card {card.id}: GET → {reply.status}"]
        problems = []
        if card.status_certain and reply.body["status"] != card.status:
            problems.append(f"card {card.id}: status {reply.body['status']!r}, acknowledged {card.status!r}")
        listed = {c["id"]: c for c in await self.api.all_pages(f"/cards/{card.id}/comments", owner)}
        if reply.body["total_comments"] != len(listed):
            problems.append(f"card {card.id}: total_comments {reply.body['total_comments']}, comments {len(listed)}")
        for comment in comments:
            if not comment.certain:
                continue
            if comment.deleted and comment.id in listed:
                problems.append(f"deleted comment {comment.id} is still listed on card {card.id}")
            elif not comment.deleted and comment.id not in listed:
                problems.append(f"comment {comment.id} on card {card.id} is lost")
            elif not comment.deleted and listed[comment.id]["body"] != comment.body:
                problems.append(
                    f"comment {comment.id}: body {listed[comment.id]['body']!r}, acknowledged {comment.body!r}"
                )
        return problems

    async def notification_gaps(self, notif_dsn: str) -> list[str]:
        """Notifications the acknowledged writes must have produced, missing from notif_svc's database:
        each sign-up's `registration`, each comment's `comment_created` for the card's creator."""
        conn = await asyncpg.connect(notif_dsn)
        try:
            rows = await conn.fetch("SELECT type, recipient_id::text, comment_id::text FROM notifications")
        finally:
            await conn.close()
        stored = {(r["type"], r["recipient_id"], r["comment_id"]) for r in rows}
        gaps = [
            f"no registration notification for {user.username}"
            for user in self.ledger.users.values()
            if ("registration", user.id, None) not in stored
        ]
        for comment in self.ledger.comments.values():
            creator = self.ledger.cards[comment.card_id].creator_id
            if creator != comment.author_id and ("comment_created", creator, comment.id) not in stored:
                gaps.append(f"no comment_created notification to {creator} for comment {comment.id}")
        return gaps


async def until(probe: Callable[[], Awaitable[T | None]], *, timeout: float, interval: float = 0.1, what: str) -> T:
    """Like tests.helpers.eventually, for probes that are slow to come true under faults."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {value!r})")
        await asyncio.sleep(interval)
