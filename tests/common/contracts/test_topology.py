"""The topology lists what exists: services whose package is not installed are skipped, not faked."""

from __future__ import annotations

import subprocess
import sys

import pytest

from common.contracts import topology
from common.contracts.topology import ServiceSpec
from tests.common.swarm.conftest import REPO_ROOT


def test_services_whose_package_is_missing_are_skipped() -> None:
    present = ServiceSpec("present", "tests.common.swarm.fake_services:create_app")
    missing_package = ServiceSpec("ghost", "ghost_svc_that_does_not_exist.app:create_app")
    missing_module = ServiceSpec("half_built", "tests.common.swarm.no_such_module:create_app")

    assert topology.services([present, missing_package, missing_module]) == [present]


def test_the_real_topology_lists_only_importable_services() -> None:
    listed = topology.services()
    assert all(topology.module_available(spec.module) for spec in listed)
    assert [spec.name for spec in listed] == [
        spec.name for spec in topology.SERVICES if topology.module_available(spec.module)
    ]
    assert {spec.database for spec in topology.SERVICES} == {
        "taskswarm_auth",
        "taskswarm_project",
        "taskswarm_comment",
        "taskswarm_notif",
    }


def test_checking_availability_imports_no_service_module() -> None:
    # In a fresh interpreter: other tests of this session import service apps themselves.
    packages = {spec.module.split(".")[0] for spec in (*topology.SERVICES, topology.GATEWAY)}
    code = (
        "import sys; from common.contracts import topology; topology.services(); topology.gateway(); "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {packages!r} and '.' in m))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert result.stdout.strip() == "[]"


def test_a_factory_string_resolves_to_the_callable() -> None:
    from tests.common.swarm.fake_services import create_app

    assert topology.load_factory("tests.common.swarm.fake_services:create_app") is create_app


def test_a_malformed_factory_string_is_refused() -> None:
    with pytest.raises(ValueError, match="not of the form"):
        topology.load_factory("tests.common.swarm.fake_services")


def test_an_unknown_service_name_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="auth_svc"):
        topology.spec_for("billing_svc")
    assert topology.spec_for("gateway").ready_path == "/health"
