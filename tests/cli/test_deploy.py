"""docker-compose.yml and the image, checked without a Docker engine: structure, and agreement with
the topology (every service that exists is deployed, with its own database)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from common import topology
from common.serve import _parse
from tests.cli.conftest import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"
INIT_SCRIPT = REPO_ROOT / "deploy" / "postgres-init" / "10-create-databases.sh"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def compose_name(service: str) -> str:
    return service.replace("_", "-")  # underscores are not valid in host names


def test_every_existing_service_is_deployed_with_its_own_database(compose: dict[str, Any]) -> None:
    services = compose["services"]
    databases = services["postgres"]["environment"]["TASKSWARM_DATABASES"].replace(",", " ").split()
    for spec in topology.services():
        deployed = services[compose_name(spec.name)]
        env = deployed["environment"]
        assert env["SERVICE_NAME"] == spec.name
        assert env["DATABASE_URL"].endswith(f"@postgres:5432/{spec.database}")
        assert spec.database in databases
        assert deployed["healthcheck"]["test"][-1].endswith("/ready', timeout=3)")
        gateway_env = services["gateway"]["environment"]
        assert gateway_env[spec.gateway_env] == f"http://{compose_name(spec.name)}:8080"


def test_services_start_only_on_healthy_dependencies_and_restart(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in [compose_name(spec.name) for spec in topology.services()] + ["gateway"]:
        service = services[name]
        assert service["restart"] == "unless-stopped"
        assert service["depends_on"]["redis"] == {"condition": "service_healthy"}
        assert service["depends_on"]["postgres"] == {"condition": "service_healthy"}
        assert service["depends_on"]["keys"] == {"condition": "service_completed_successfully"}
        assert "healthcheck" in service
    assert services["gateway"]["healthcheck"]["test"][-1].endswith("/health', timeout=3)")


def test_redis_keeps_an_append_only_file_and_postgres_is_16(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "--appendonly" in services["redis"]["command"]
    assert services["redis"]["command"][services["redis"]["command"].index("--appendonly") + 1] == "yes"
    assert services["postgres"]["image"].startswith("postgres:16")
    assert "./deploy/postgres-init:/docker-entrypoint-initdb.d:ro" in services["postgres"]["volumes"]


def test_only_auth_gets_the_private_key(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        mounts = service.get("volumes", [])
        holds_private = any(mount.startswith("private-key:") for mount in mounts)
        assert holds_private == (name in {"auth-svc", "keys"}), name


def test_the_keys_one_shot_writes_a_key_pair(compose: dict[str, Any], tmp_path: Path) -> None:
    command = compose["services"]["keys"]["command"]
    assert command[:2] == ["python", "-c"]
    code = command[2].replace("/keys/", f"{tmp_path}/")

    for _ in range(2):  # a second run keeps the existing pair
        subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)

    assert (tmp_path / "private" / "jwt_private.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY")
    assert (tmp_path / "public" / "jwt_public.pem").read_bytes().startswith(b"-----BEGIN PUBLIC KEY")


def test_the_database_init_script_is_valid_shell_and_executable() -> None:
    assert os.access(INIT_SCRIPT, os.X_OK)
    subprocess.run(["sh", "-n", str(INIT_SCRIPT)], check=True)


def test_the_image_runs_the_service_named_by_service_name_as_a_non_root_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dockerfile = (REPO_ROOT / "deploy" / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    assert "\nUSER taskswarm\n" in dockerfile
    assert 'CMD ["python", "-m", "common.serve"]' in dockerfile

    monkeypatch.setenv("SERVICE_NAME", "auth_svc")
    assert _parse([]).name == "auth_svc"
    monkeypatch.delenv("SERVICE_NAME")
    with pytest.raises(SystemExit):
        _parse([])


def test_notifications_use_mongodb_in_the_production_topology(compose: dict[str, Any]) -> None:
    services = compose["services"]
    notif = services["notif-svc"]
    assert notif["environment"]["MONGO_URL"] == "mongodb://mongo:27017"
    assert notif["depends_on"]["mongo"] == {"condition": "service_healthy"}
    assert services["mongo"]["image"].startswith("mongo:")
    assert "mongo-data:/data/db" in services["mongo"]["volumes"]
    assert "healthcheck" in services["mongo"]
