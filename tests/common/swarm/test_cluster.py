"""The embedded Redis Cluster (`common.swarm.cluster`): it forms from the machine's `redis-server`, a
cluster client writes through it to the slot owners, the event streams spread over the primaries, and a
killed primary's replica takes over."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from redis.asyncio.cluster import ClusterNode as Seed
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from common.contracts.topology import SERVICES
from common.core.envelope import DEAD_LETTER_STREAM
from common.redis.keys import stream_key
from common.swarm.cluster import SLOTS, ClusterNode, EmbeddedRedisCluster
from common.testing import embedded_redis_cluster


def cluster_client(cluster: EmbeddedRedisCluster) -> RedisCluster:
    nodes = [Seed(host, port) for host, port in cluster.startup_nodes if _listening(cluster, port)]
    return RedisCluster(startup_nodes=nodes, decode_responses=True)


def _listening(cluster: EmbeddedRedisCluster, port: int) -> bool:
    return any(node.port == port and node.alive for node in cluster.nodes)


def event_streams() -> list[str]:
    """Every stream of the current event catalog (what the services publish) and the dead-letter stream."""
    types = {event_type for spec in SERVICES for event_type in spec.manifest().publishes}
    return [*sorted(stream_key(event_type) for event_type in types), DEAD_LETTER_STREAM]


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_cluster_forms_with_three_primaries_each_with_a_replica_of_its_own_and_every_slot_covered(
    redis_cluster: EmbeddedRedisCluster,
) -> None:
    primaries, replicas = redis_cluster.primary_nodes(), redis_cluster.replica_nodes()
    assert len(primaries) == 3 and len(replicas) == 3
    followed = set()
    for replica in replicas:
        with replica.client() as client:
            info = client.info("replication")
        assert info["master_link_status"] == "up"
        followed.add(info["master_port"])
    assert followed == {primary.port for primary in primaries}
    for node in redis_cluster.nodes:
        with node.client() as client:
            info = dict(line.split(":", 1) for line in client.execute_command("CLUSTER", "INFO").split() if ":" in line)
        assert info["cluster_state"] == "ok"
        assert int(info["cluster_slots_ok"]) == SLOTS
        assert int(info["cluster_known_nodes"]) == 6


async def test_xadds_through_a_cluster_client_land_on_the_primary_owning_their_slot(
    flushed_redis_cluster: EmbeddedRedisCluster,
) -> None:
    client = cluster_client(flushed_redis_cluster)
    try:
        for key in ("events:newCard", "events:newUser"):
            await client.xadd(key, {"payload": "{}"})
    finally:
        await client.aclose()
    for key in ("events:newCard", "events:newUser"):
        owner = flushed_redis_cluster.owner_of(key_slot(key.encode()))
        with owner.client() as direct:
            assert direct.xlen(key) == 1


def test_the_event_streams_of_the_current_catalog_spread_over_at_least_two_primaries(
    redis_cluster: EmbeddedRedisCluster,
) -> None:
    owners = {stream: redis_cluster.owner_of(key_slot(stream.encode())).port for stream in event_streams()}
    assert len(set(owners.values())) >= 2


async def test_after_kill_9_of_a_primary_its_replica_is_promoted_and_a_write_to_its_slots_succeeds(
    tmp_path: Path,
) -> None:
    key = "events:newCard"
    slot = key_slot(key.encode())
    with embedded_redis_cluster(tmp_path / "cluster") as cluster:
        client = cluster_client(cluster)
        try:
            await client.xadd(key, {"n": "1"})
            old = cluster.owner_of(slot)
            with old.client() as direct:
                assert direct.execute_command("WAIT", 1, 5000) == 1  # the entry is on the replica
                replica_port = next(r.port for r in cluster.replica_nodes() if _follows(r, old.port))
            cluster.kill(old)
            cluster.wait_ready(timeout_s=15.0)
            new = cluster.owner_of(slot)
            assert new.port == replica_port and new.role == "primary"
            await client.xadd(key, {"n": "2"})
        finally:
            await client.aclose()
        with new.client() as direct:
            assert [fields["n"] for _, fields in direct.xrange(key)] == ["1", "2"]


def _follows(replica: ClusterNode, primary_port: int) -> bool:
    with replica.client() as client:
        return bool(client.info("replication")["master_port"] == primary_port)


def test_a_start_that_fails_half_way_leaves_no_node_running(tmp_path: Path) -> None:
    root = tmp_path / "cluster"
    root.mkdir()
    (root / "node-2").write_text("a file where the third node's folder would go")
    cluster = EmbeddedRedisCluster(root, node_timeout_ms=1000)
    with pytest.raises(OSError):
        cluster.start()
    assert len(cluster.nodes) == 3
    assert not any(node.alive for node in cluster.nodes)


def test_stop_leaves_no_node_running(tmp_path: Path) -> None:
    with embedded_redis_cluster(tmp_path / "cluster", replicas_per_primary=0) as cluster:
        pids = [node.pid for node in cluster.nodes]
    assert pids and all(pid is not None and not process_alive(pid) for pid in pids)
