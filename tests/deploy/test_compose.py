"""docker-compose.yml and the image, checked without a Docker engine: the compose-spec schema, and
agreement with the topology (every service that exists is deployed, with its own database and role)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from common.contracts import topology
from common.core.settings import Settings
from common.serve import SHUTDOWN_TIMEOUT_S, _parse
from tests.deploy.conftest import (
    COMPOSE_FILE,
    DEPLOY,
    REPO_ROOT,
    SCHEMAS,
    compose_name,
    interpolate,
    interpolated_variables,
    is_consumer,
    password_variable,
)

MONITORING = {"prometheus", "grafana"}


@pytest.fixture(scope="module")
def compose_validator() -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)


def schema_errors(validator: jsonschema.protocols.Validator, document: Any) -> list[str]:
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(document)]


def app_services() -> list[str]:
    return [compose_name(spec.name) for spec in topology.services()]


def test_the_compose_file_validates_against_the_compose_spec_schema(
    compose_validator: jsonschema.protocols.Validator, compose_raw: dict[str, Any], compose: dict[str, Any]
) -> None:
    assert schema_errors(compose_validator, compose_raw) == []  # as written
    assert schema_errors(compose_validator, compose) == []  # after interpolation, every default taken
    overridden = interpolate(compose_raw, {"COMMENT_SVC_REPLICAS": "3", "GATEWAY_PORT": "9000"})
    assert schema_errors(compose_validator, overridden) == []


def test_the_schema_check_has_teeth(compose_validator: jsonschema.protocols.Validator, compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["comment-svc"]["healthchek"] = broken["services"]["comment-svc"].pop("healthcheck")
    broken["services"]["redis"]["restart"] = ["always"]
    broken["services"]["gateway"]["depends_on"]["redis"]["condition"] = "service_happy"
    errors = schema_errors(compose_validator, broken)
    assert any(e.startswith("services/comment-svc:") and "healthchek" in e for e in errors), errors
    assert any(e.startswith("services/redis/restart:") for e in errors), errors
    assert any(e.startswith("services/gateway/depends_on") for e in errors), errors


def test_every_existing_service_is_deployed_with_its_own_database_and_role(compose: dict[str, Any]) -> None:
    services = compose["services"]
    postgres_env = services["postgres"]["environment"]
    pairs = postgres_env["TASKSWARM_DATABASES"].replace(",", " ").split()
    seen_roles: set[str] = set()
    for spec in topology.services():
        deployed = services[compose_name(spec.name)]
        env = deployed["environment"]
        assert env["SERVICE_NAME"] == spec.name
        url = urlsplit(env["DATABASE_URL"])
        role = url.username
        assert (url.scheme, url.hostname, url.port, url.path) == ("postgresql", "postgres", 5432, f"/{spec.database}")
        assert role == spec.name and role not in seen_roles and role != postgres_env["POSTGRES_USER"]
        seen_roles.add(role)
        # The init script gives the role the very password the service connects with.
        assert f"{spec.database}:{role}" in pairs
        assert url.password and url.password == postgres_env[password_variable(role)]
        assert deployed["healthcheck"]["test"][-1].endswith("/ready', timeout=3)")
        gateway_env = services["gateway"]["environment"]
        assert gateway_env[spec.gateway_env] == f"http://{compose_name(spec.name)}:8080"
    assert len(pairs) == len(topology.SERVICES)


def test_the_passwords_come_from_the_environment_and_agree_when_overridden(compose_raw: dict[str, Any]) -> None:
    env = {password_variable(spec.name): f"secret-of-{spec.name}" for spec in topology.services()}
    env |= {"NOTIF_SVC_MONGO_PASSWORD": "mongo-secret", "POSTGRES_PASSWORD": "root-secret"}
    services = interpolate(compose_raw, env)["services"]
    for spec in topology.services():
        url = urlsplit(services[compose_name(spec.name)]["environment"]["DATABASE_URL"])
        assert url.password == f"secret-of-{spec.name}"
        assert services["postgres"]["environment"][password_variable(spec.name)] == f"secret-of-{spec.name}"
    assert urlsplit(services["notif-svc"]["environment"]["MONGO_URL"]).password == "mongo-secret"
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "root-secret"


def test_the_env_example_names_every_variable_the_compose_file_reads() -> None:
    example = (DEPLOY / "compose.env.example").read_text()
    documented = {line.split("=", 1)[0] for line in example.splitlines() if line and not line.startswith("#")}
    assert interpolated_variables(COMPOSE_FILE.read_text()) == documented


def test_services_start_only_on_healthy_dependencies_and_restart(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in [*app_services(), "gateway"]:
        service = services[name]
        assert service["restart"] == "unless-stopped"
        assert service["depends_on"]["redis"] == {"condition": "service_healthy"}
        assert service["depends_on"]["postgres"] == {"condition": "service_healthy"}
        assert service["depends_on"]["keys"] == {"condition": "service_completed_successfully"}
        assert "healthcheck" in service
    for name in app_services():
        assert services["gateway"]["depends_on"][name] == {"condition": "service_healthy"}
    assert services["gateway"]["healthcheck"]["test"][-1].endswith("/health', timeout=3)")
    for name, service in services.items():
        assert service["restart"] == ("no" if name == "keys" else "unless-stopped"), name
        assert name == "keys" or "healthcheck" in service, name


def test_consumer_services_can_run_more_replicas(compose: dict[str, Any], compose_raw: dict[str, Any]) -> None:
    services = compose["services"]
    consumers = [spec for spec in topology.services() if is_consumer(spec)]
    assert {spec.name for spec in consumers} >= {"project_svc", "comment_svc", "notif_svc"}
    for spec in consumers:
        name = compose_name(spec.name)
        # `--scale` needs no fixed container name and no published port; the default count is a variable.
        assert "container_name" not in services[name] and "ports" not in services[name]
        assert compose_raw["services"][name]["deploy"]["replicas"] == f"${{{spec.name.upper()}_REPLICAS:-1}}"
        # Each replica is its own consumer: nothing pins CONSUMER_NAME, so it defaults per container.
        assert "CONSUMER_NAME" not in services[name]["environment"]
    scaled = interpolate(compose_raw, {"COMMENT_SVC_REPLICAS": "3"})["services"]["comment-svc"]
    assert scaled["deploy"]["replicas"] == "3"


def test_stopping_leaves_time_for_a_graceful_shutdown(compose: dict[str, Any]) -> None:
    needed = SHUTDOWN_TIMEOUT_S + Settings().consumer_shutdown_grace_s
    for name in [*app_services(), "gateway"]:
        grace = compose["services"][name]["stop_grace_period"]
        assert grace.endswith("s") and float(grace[:-1]) > needed, name


def test_the_database_pools_fit_in_postgres(compose: dict[str, Any]) -> None:
    services = compose["services"]
    command = services["postgres"]["command"]
    max_connections = int(next(arg.split("=")[1] for arg in command if arg.startswith("max_connections=")))
    pool_max = {int(services[name]["environment"]["DB_POOL_MAX"]) for name in app_services()}
    assert len(pool_max) == 1
    # auth-svc and three replicas of each consumer service, with the superuser's reserved slots to spare.
    replicas = 1 + 3 * (len(app_services()) - 1)
    assert replicas * pool_max.pop() <= max_connections - 3


def test_redis_keeps_an_append_only_file_and_postgres_is_16(compose: dict[str, Any]) -> None:
    services = compose["services"]
    command = services["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    assert "redis-data:/data" in services["redis"]["volumes"]
    assert services["postgres"]["image"].startswith("postgres:16")
    assert "./deploy/postgres-init:/docker-entrypoint-initdb.d:ro" in services["postgres"]["volumes"]
    # Healthy only after the init scripts: the image's temporary init server listens on no TCP port.
    assert services["postgres"]["healthcheck"]["test"][:4] == ["CMD", "pg_isready", "-h", "127.0.0.1"]


def test_only_auth_gets_the_private_key(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        mounts = service.get("volumes", [])
        holds_private = any(mount.startswith("private-key:") for mount in mounts)
        assert holds_private == (name in {"auth-svc", "keys"}), name
    assert services["auth-svc"]["environment"]["JWT_PRIVATE_KEY_FILE"] == "/keys/private/jwt_private.pem"


def test_the_keys_one_shot_writes_a_key_pair(compose: dict[str, Any], tmp_path: Path) -> None:
    command = compose["services"]["keys"]["command"]
    assert command[:2] == ["python", "-c"]
    code = command[2].replace("/keys/", f"{tmp_path}/")

    for _ in range(2):  # a second run keeps the existing pair
        subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)

    assert (tmp_path / "private" / "jwt_private.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY")
    assert (tmp_path / "public" / "jwt_public.pem").read_bytes().startswith(b"-----BEGIN PUBLIC KEY")


def test_the_image_runs_the_service_named_by_service_name_as_a_non_root_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    assert "\nUSER taskswarm\n" in dockerfile
    assert 'CMD ["python", "-m", "common.serve"]' in dockerfile

    monkeypatch.setenv("SERVICE_NAME", "auth_svc")
    assert _parse([]).name == "auth_svc"
    monkeypatch.delenv("SERVICE_NAME")
    with pytest.raises(SystemExit):
        _parse([])


def test_the_build_context_leaves_out_secrets_and_local_state() -> None:
    ignored = set((REPO_ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".swarm", ".env", "deploy"} <= ignored


def test_notifications_use_mongodb_with_a_user_of_their_own(compose: dict[str, Any]) -> None:
    services = compose["services"]
    notif, mongo = services["notif-svc"], services["mongo"]
    url = urlsplit(notif["environment"]["MONGO_URL"])
    assert (url.scheme, url.hostname, url.port) == ("mongodb", "mongo", 27017)
    # The user is defined in the service's database, which the URL names (and so authenticates against).
    assert url.username == mongo["environment"]["TASKSWARM_MONGO_USER"] == "notif_svc"
    assert url.password == mongo["environment"]["NOTIF_SVC_MONGO_PASSWORD"]
    assert url.path == f"/{notif['environment']['MONGO_DATABASE']}"
    assert notif["environment"]["MONGO_DATABASE"] == mongo["environment"]["TASKSWARM_MONGO_DATABASE"]
    # A root user turns authentication on; it stays with the operator.
    assert mongo["environment"]["MONGO_INITDB_ROOT_USERNAME"] != url.username
    assert notif["depends_on"]["mongo"] == {"condition": "service_healthy"}
    assert mongo["image"].startswith("mongo:")
    assert "mongo-data:/data/db" in mongo["volumes"]
    assert "./deploy/mongo-init:/docker-entrypoint-initdb.d:ro" in mongo["volumes"]
    assert "healthcheck" in mongo
    for name in app_services():
        if name != "notif-svc":
            assert "MONGO_URL" not in services[name]["environment"], name


def test_prometheus_and_grafana_are_an_optional_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        assert service.get("profiles") == (["monitoring"] if name in MONITORING else None), name
    prometheus, grafana = services["prometheus"], services["grafana"]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert grafana["depends_on"]["prometheus"] == {"condition": "service_healthy"}
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    for service in (prometheus, grafana):
        for mount in service["volumes"]:
            source = mount.split(":")[0]
            if source.startswith("./"):
                assert (REPO_ROOT / source).exists(), f"{source} is mounted but missing"


def test_grafana_provisions_the_prometheus_data_source_and_the_dashboard(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    provisioning = DEPLOY / "grafana" / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert [(s["type"], s["url"], s["isDefault"]) for s in sources] == [("prometheus", "http://prometheus:9090", True)]
    providers = yaml.safe_load((provisioning / "dashboards" / "taskswarm.yml").read_text())["providers"]
    dashboard_mount = next(m for m in grafana["volumes"] if m.startswith("./deploy/grafana/taskswarm-dashboard.json:"))
    mounted_at = Path(dashboard_mount.split(":")[1])
    assert [p["options"]["path"] for p in providers] == [str(mounted_at.parent)]


def test_the_dashboard_refers_only_to_the_provisioned_data_source() -> None:
    dashboard_file = DEPLOY / "grafana" / "taskswarm-dashboard.json"
    dashboard = json.loads(dashboard_file.read_text())
    # File provisioning does not resolve an exported dashboard's `__inputs` (`${DS_PROMETHEUS}`).
    assert "__inputs" not in dashboard
    provisioned = {
        s["uid"]
        for s in yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"]
    }
    variables = {
        f"${{{v['name']}}}" for v in dashboard.get("templating", {}).get("list", []) if v.get("type") == "datasource"
    } | {f"${v['name']}" for v in dashboard.get("templating", {}).get("list", []) if v.get("type") == "datasource"}

    def uids(node: Any) -> list[str]:
        found: list[str] = []
        if isinstance(node, dict):
            source = node.get("datasource")
            if isinstance(source, dict) and "uid" in source:
                found.append(source["uid"])
            found += [uid for value in node.values() for uid in uids(value)]
        elif isinstance(node, list):
            found += [uid for value in node for uid in uids(value)]
        return found

    unknown = {uid for uid in uids(dashboard) if uid not in provisioned | variables | {"-- Grafana --", "grafana"}}
    assert unknown == set()
