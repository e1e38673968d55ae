"""deploy/k8s, checked without a cluster: every manifest against the Kubernetes JSON schemas (strict, as
`kubeconform -strict` would: unknown fields are errors), the kustomization as kubectl renders it, and
agreement with the topology and with what the services need (probes, consumers, keys, connections)."""

from __future__ import annotations

import copy
import functools
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from common.contracts import topology
from common.core.settings import Settings
from common.service.tokens import TokenVerifier
from tests.deploy.conftest import (
    DEPLOY,
    K8S,
    MONGO_INIT_SCRIPT,
    PG_INIT_SCRIPT,
    compose_name,
    is_consumer,
    load_documents,
    password_variable,
)
from tests.helpers import access_token, user_record

# The oldest Kubernetes these manifests promise to work on (`labels` in kustomization.yaml needs kubectl
# 1.27; PodDisruptionBudget.unhealthyPodEvictionPolicy is on by default from 1.27), and the newest the
# validator knows.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
IMAGE_UID = 10001  # deploy/Dockerfile's `taskswarm` user
Manifests = dict[tuple[str, str], dict[str, Any]]


@pytest.fixture(scope="module", autouse=True)
def _schemas_read_once() -> Iterator[None]:
    """kubernetes-validate parses a version's 1.8 MB of definitions on every call: once is enough."""
    with pytest.MonkeyPatch.context() as patch:
        cached = functools.cache(kubernetes_validate.utils.schema_contents)
        patch.setattr(kubernetes_validate.utils, "schema_contents", cached)
        yield


def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return loaded


def schema_errors(doc: dict[str, Any]) -> list[str]:
    errors = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            errors.append(f"k8s {version} {doc['kind']}/{doc['metadata']['name']} {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(exc.message)
    return errors


@pytest.fixture(scope="module")
def manifests() -> Manifests:
    """Every object of the kustomization's resources, by (kind, name), as written."""
    found: Manifests = {}
    for resource in kustomization()["resources"]:
        for doc in load_documents(K8S / resource):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in found, f"{key} defined twice"
            found[key] = doc
    return found


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of deploy/k8s with its secrets/ filled by make-secrets.sh, as a user would have it."""
    assert shutil.which("openssl"), "make-secrets.sh needs openssl (part of Debian's base system)"
    copy_dir = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, copy_dir, ignore=shutil.ignore_patterns("db.env", "*.pem"))
    subprocess.run(["sh", str(copy_dir / "make-secrets.sh")], check=True, capture_output=True)
    return copy_dir / "secrets"


def deployment(manifests: Manifests, name: str) -> dict[str, Any]:
    return manifests[("Deployment", name)]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    found: dict[str, Any] = containers[0]
    return found


def env_of(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container(workload).get("env", [])}


def config_data(manifests: Manifests) -> dict[str, str]:
    data: dict[str, str] = manifests[("ConfigMap", "taskswarm-config")]["data"]
    return data


def secret_ref(entry: dict[str, Any]) -> tuple[str, str]:
    ref = entry["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


def walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def app_deployments() -> list[str]:
    return [compose_name(spec.name) for spec in topology.services()] + ["gateway"]


# -- schemas -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("resource", kustomization()["resources"])
def test_each_manifest_validates_against_the_kubernetes_schemas(resource: str) -> None:
    docs = load_documents(K8S / resource)
    assert docs
    assert [error for doc in docs for error in schema_errors(doc)] == []


def test_the_schema_check_has_teeth(manifests: Manifests) -> None:
    broken = copy.deepcopy(deployment(manifests, "comment-svc"))
    container(broken)["readinesProbe"] = container(broken).pop("readinessProbe")
    assert any("readinesProbe" in error for error in schema_errors(broken))
    broken = copy.deepcopy(manifests[("HorizontalPodAutoscaler", "comment-svc")])
    broken["spec"]["maxReplicas"] = "eight"
    assert any("spec.maxReplicas" in error for error in schema_errors(broken))


def test_every_manifest_is_in_the_kustomization_and_the_init_scripts_are_the_compose_ones() -> None:
    listed = set(kustomization()["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    # kustomize reads files only below its folder, hence copies; they must not drift.
    assert (K8S / "init" / PG_INIT_SCRIPT.name).read_bytes() == PG_INIT_SCRIPT.read_bytes()
    assert (K8S / "init" / MONGO_INIT_SCRIPT.name).read_bytes() == MONGO_INIT_SCRIPT.read_bytes()
    generated = [
        f
        for g in kustomization()["configMapGenerator"] + kustomization()["secretGenerator"]
        for f in g.get("files", []) + g.get("envs", [])
    ]
    assert all(f.startswith("secrets/") or (K8S / f).is_file() for f in generated)


def test_secrets_are_kept_out_of_version_control() -> None:
    assert (K8S.parents[1] / ".git").exists(), "the tests run in a git checkout (CI clones the repository)"
    ignore = (K8S / "secrets" / ".gitignore").read_text().split()
    assert ignore[-2:] == ["*", "!.gitignore"]
    tracked = subprocess.run(
        ["git", "ls-files", "--others", "--cached", "--exclude-standard", "deploy/k8s/secrets"],
        cwd=K8S.parents[1],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert tracked in ([], ["deploy/k8s/secrets/.gitignore"])


# -- agreement with the topology ---------------------------------------------------------------------------


def test_every_existing_service_is_deployed_with_its_own_database_role(manifests: Manifests) -> None:
    config = config_data(manifests)
    pairs = config["TASKSWARM_DATABASES"].replace(",", " ").split()
    postgres_env = env_of(manifests[("StatefulSet", "postgres")])
    for spec in topology.services():
        name = compose_name(spec.name)
        workload = deployment(manifests, name)
        env = env_of(workload)
        assert env["SERVICE_NAME"]["value"] == spec.name
        assert env["DATABASE_URL"]["value"] == (
            f"postgresql://{spec.name}:$(DB_PASSWORD)@$(POSTGRES_ADDRESS)/{spec.database}"
        )
        # The service's password and the one the init script gives its role are the same Secret key.
        assert secret_ref(env["DB_PASSWORD"]) == ("taskswarm-db", password_variable(spec.name))
        assert secret_ref(postgres_env[password_variable(spec.name)]) == secret_ref(env["DB_PASSWORD"])
        assert f"{spec.database}:{spec.name}" in pairs
        assert spec.gateway_env and config[spec.gateway_env] == f"http://{name}:8080"
        service = manifests[("Service", name)]
        assert service["spec"]["selector"] == workload["spec"]["selector"]["matchLabels"]
        assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http"}]
    assert len(pairs) == len(topology.SERVICES)
    assert config["POSTGRES_ADDRESS"] == "postgres:5432" and ("Service", "postgres") in manifests


def test_a_pod_sees_its_own_password_and_no_other(manifests: Manifests) -> None:
    for name in app_deployments():
        workload = deployment(manifests, name)
        assert all("secretRef" not in source for source in container(workload).get("envFrom", []))
        keys = {secret_ref(e)[1] for e in env_of(workload).values() if "secretKeyRef" in e.get("valueFrom", {})}
        expected = set() if name == "gateway" else {password_variable(name.replace("-", "_"))}
        if name == "notif-svc":
            expected.add("NOTIF_SVC_MONGO_PASSWORD")
        assert keys == expected, name


def test_variable_references_resolve(manifests: Manifests) -> None:
    """`$(NAME)` in a value expands only to a variable defined before it or from `envFrom`."""
    config = config_data(manifests)
    for name in app_deployments():
        defined = set(config)
        for entry in container(deployment(manifests, name))["env"]:
            for reference in re.findall(r"\$\(([A-Z_]+)\)", entry.get("value", "")):
                assert reference in defined, f"{name}: {entry['name']} uses $({reference})"
            defined.add(entry["name"])


def test_settings_in_the_config_map_are_settings(manifests: Manifests) -> None:
    known = {name.upper() for name in Settings.__dataclass_fields__}
    # Read by the data stores' init scripts or composed into a URL in a Deployment, not by Settings.
    composed = {"POSTGRES_ADDRESS", "MONGO_ADDRESS", "TASKSWARM_DATABASES"}
    assert set(config_data(manifests)) - known == composed


# -- probes, consumers, disruptions ---------------------------------------------------------------------------


def test_metrics_are_scraped_from_their_own_port_which_no_service_routes(manifests: Manifests) -> None:
    metrics_port = int(config_data(manifests)["METRICS_PORT"])
    assert metrics_port == Settings().metrics_port
    for name in app_deployments():
        workload = deployment(manifests, name)
        assert container(workload)["ports"] == [
            {"name": "http", "containerPort": 8080},
            {"name": "metrics", "containerPort": metrics_port},
        ]
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(metrics_port)
        assert annotations["prometheus.io/path"] == "/metrics"
        assert manifests[("Service", name)]["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http"}]


def test_services_are_probed_on_ready_and_health(manifests: Manifests) -> None:
    for spec in topology.services():
        main = container(deployment(manifests, compose_name(spec.name)))
        assert main["readinessProbe"]["httpGet"] == {"path": spec.ready_path, "port": "http"}
        assert main["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
        # Migrations run before the port opens: liveness waits for a startup probe.
        startup = main["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 120
    gateway = container(deployment(manifests, "gateway"))
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    # The gateway's /health aggregates every service: a service outage must not restart the gateways.
    assert gateway["livenessProbe"] == {**gateway["livenessProbe"], "tcpSocket": {"port": "http"}}


def test_consumer_services_autoscale_and_name_their_consumers_after_their_pods(manifests: Manifests) -> None:
    consumers = {compose_name(spec.name) for spec in topology.services() if is_consumer(spec)}
    assert consumers >= {"project-svc", "comment-svc", "notif-svc"}
    autoscaled = {name for kind, name in manifests if kind == "HorizontalPodAutoscaler"}
    assert autoscaled == consumers
    for name in consumers:
        hpa = manifests[("HorizontalPodAutoscaler", name)]["spec"]
        assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]
        workload = deployment(manifests, name)
        assert "replicas" not in workload["spec"]  # the HPA's to set; re-applying must not reset it
        assert env_of(workload)["CONSUMER_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        # Utilization is a share of the request: without one, the HPA cannot compute it.
        assert container(workload)["resources"]["requests"]["cpu"]
        # Stopping drains the consumer's batch before the kubelet's SIGKILL.
        grace = workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > 5 + Settings().consumer_shutdown_grace_s + 5


def test_every_deployment_has_a_disruption_budget_that_lets_a_drain_proceed(manifests: Manifests) -> None:
    for name in app_deployments():
        workload = deployment(manifests, name)
        pdb = manifests[("PodDisruptionBudget", name)]["spec"]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert pdb["selector"]["matchLabels"].items() <= labels.items()
        hpa = manifests.get(("HorizontalPodAutoscaler", name))
        fewest = hpa["spec"]["minReplicas"] if hpa else workload["spec"]["replicas"]
        assert pdb["minAvailable"] < fewest, name
        assert workload["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_the_database_pools_fit_in_postgres(manifests: Manifests) -> None:
    args = container(manifests[("StatefulSet", "postgres")])["args"]
    max_connections = int(next(a.split("=")[1] for a in args if a.startswith("max_connections=")))
    most_pods = 0
    for spec in topology.services():
        name = compose_name(spec.name)
        hpa = manifests.get(("HorizontalPodAutoscaler", name))
        most_pods += hpa["spec"]["maxReplicas"] if hpa else deployment(manifests, name)["spec"]["replicas"]
    # Plus a rolling update's surge pod per service, and the superuser's reserved slots.
    most_pods += len(topology.services())
    assert most_pods * int(config_data(manifests)["DB_POOL_MAX"]) <= max_connections - 3


# -- keys, security, data stores ----------------------------------------------------------------------------------


def test_only_auth_mounts_the_private_key_and_everyone_verifies_with_the_public_one(manifests: Manifests) -> None:
    for name in app_deployments():
        workload = deployment(manifests, name)
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container(workload)["volumeMounts"]}
        secret_volumes = {v["secret"]["secretName"] for v in volumes.values() if "secret" in v}
        assert secret_volumes == ({"taskswarm-jwt-private"} if name == "auth-svc" else set()), name
        assert volumes[mounts["/keys/public"]]["configMap"]["name"] == "taskswarm-jwt-public"
        assert env_of(workload)["JWT_PUBLIC_KEY_FILE"]["value"] == "/keys/public/jwt_public.pem"
    auth = deployment(manifests, "auth-svc")
    mounts = {m["mountPath"]: m["name"] for m in container(auth)["volumeMounts"]}
    assert mounts["/keys/private"] == "jwt-private"
    assert env_of(auth)["JWT_PRIVATE_KEY_FILE"]["value"] == "/keys/private/jwt_private.pem"


def test_service_pods_run_unprivileged(manifests: Manifests) -> None:
    for name in app_deployments():
        pod = deployment(manifests, name)["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == IMAGE_UID
        security = container(deployment(manifests, name))["securityContext"]
        assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True
        assert security["capabilities"] == {"drop": ["ALL"]}
    assert f"--uid {IMAGE_UID}" in (DEPLOY / "Dockerfile").read_text()


def test_data_stores_are_stateful_sets_with_volumes(manifests: Manifests) -> None:
    for name in ("redis", "postgres", "mongo"):
        workload = manifests[("StatefulSet", name)]
        assert workload["spec"]["serviceName"] == name and workload["spec"]["replicas"] == 1
        claims = workload["spec"]["volumeClaimTemplates"]
        assert [c["metadata"]["name"] for c in claims] == ["data"]
        assert any(m["name"] == "data" for m in container(workload)["volumeMounts"])
        assert {"readinessProbe", "livenessProbe"} <= container(workload).keys()
        assert manifests[("Service", name)]["spec"]["clusterIP"] == "None"
    redis_args = container(manifests[("StatefulSet", "redis")])["args"]
    assert redis_args[redis_args.index("--appendonly") + 1] == "yes"
    postgres = manifests[("StatefulSet", "postgres")]
    assert container(postgres)["image"].startswith("postgres:16")
    init = next(v for v in postgres["spec"]["template"]["spec"]["volumes"] if v["name"] == "init")
    # Executable, so the image runs the script instead of sourcing it into its own shell.
    assert init["configMap"] == {"name": "postgres-init", "defaultMode": 0o555}
    mongo_env = env_of(manifests[("StatefulSet", "mongo")])
    notif_env = env_of(deployment(manifests, "notif-svc"))
    assert secret_ref(mongo_env["NOTIF_SVC_MONGO_PASSWORD"]) == secret_ref(notif_env["MONGO_PASSWORD"])
    assert notif_env["MONGO_URL"]["value"].startswith(f"mongodb://{mongo_env['TASKSWARM_MONGO_USER']['value']}:")


def test_make_secrets_fills_every_key_the_manifests_use_and_keeps_them(manifests: Manifests, secrets_dir: Path) -> None:
    values = dict(
        line.split("=", 1) for line in (secrets_dir / "db.env").read_text().splitlines() if not line.startswith("#")
    )
    used = {
        secret_ref({"valueFrom": node})[1]
        for doc in manifests.values()
        for node in walk(doc)
        if node.get("secretKeyRef", {}).get("name") == "taskswarm-db"
    }
    assert used == set(values)
    assert all(re.fullmatch(r"[0-9a-f]{48}", value) for value in values.values())  # URL-safe as they are

    before = {p.name: p.read_bytes() for p in secrets_dir.iterdir()}
    subprocess.run(["sh", str(secrets_dir.parent / "make-secrets.sh")], check=True, capture_output=True)
    assert {p.name: p.read_bytes() for p in secrets_dir.iterdir()} == before


def test_make_secrets_makes_a_key_pair_that_signs_and_verifies_tokens(secrets_dir: Path) -> None:
    token = access_token(secrets_dir, user_record())
    verifier = TokenVerifier((secrets_dir / "jwt_public.pem").read_bytes(), "taskswarm", None)
    assert verifier.decode(token)["typ"] == "access"
