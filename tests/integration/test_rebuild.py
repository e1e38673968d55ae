"""Replica rebuild: after the original events were trimmed away, a wiped replica converges again from
the snapshots its producers re-publish (`swarm republish`), checked by the convergence checker."""

from __future__ import annotations

from common.http.app import runtime_of
from common.messaging.republish import republish
from common.swarm.check import declared_checks, run_checks, wait_converged
from common.swarm.republish_cli import declared_snapshots
from tests.integration.conftest import Pair, workload

SERVICES = ["auth_svc", "project_svc", "comment_svc", "notif_svc"]


async def trim_every_stream(redis) -> int:  # type: ignore[no-untyped-def]
    trimmed = 0
    async for key in redis.scan_iter(match="events:*", _type="STREAM"):
        trimmed += await redis.xtrim(key, maxlen=0, approximate=False)
    return trimmed


async def test_a_wiped_replica_converges_from_republished_snapshots_after_trimming(pair: Pair, redis):
    await workload(pair, redis)
    writers = [
        ("POST", f"/cards/{card_id}/comments")
        for card_id in await pair.pool(pair.projects).fetch("SELECT id FROM cards ORDER BY id LIMIT 2")
    ]
    assert writers
    urls = {
        name: runtime_of(c.server.app).settings.database_url
        for name, c in (("project_svc", pair.projects), ("comment_svc", pair.comments))
    }
    checks = declared_checks(SERVICES)
    assert (await wait_converged(urls, checks, timeout_s=10)).clean

    assert await trim_every_stream(redis) > 0  # the original events are gone for good
    replica = pair.pool(pair.comments)
    await replica.execute("TRUNCATE projects, members, cards")  # the replicas, not comment_svc's own data
    broken = await run_checks(urls, checks)
    assert {f.check for f in broken.findings} == {"comment_svc.projects", "comment_svc.members", "comment_svc.cards"}

    snapshots = declared_snapshots(SERVICES)
    assert set(snapshots) == {"users", "projects", "cards", "comments"}
    for kind in ("projects", "cards"):
        queued, _ = await republish(urls["project_svc"], snapshots[kind].snapshot, page_size=2)  # several pages
        assert queued > 0
    report = await wait_converged(urls, checks, timeout_s=10)
    assert report.clean, report.to_dict()
    assert report.checked["comment_svc.cards"] == 4
