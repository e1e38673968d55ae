"""Every service's manifest says what the service is, and a wrong one fails loudly: at start-up, and here.

Checked for the real manifests: each event has a schema, every lazy part (app, routes, snapshots, check
queries, CLI groups) resolves, every replica check names queries that the services on both sides declare,
and the handler tables the apps run match what the manifests consume.
"""

from __future__ import annotations

import dataclasses

import pytest
from marshmallow import Schema, fields

from common.contracts import topology
from common.contracts.checks import Invariant, Mirror
from common.contracts.manifest import ManifestError, ServiceManifest, validate
from common.core.settings import Settings
from common.swarm.check import declared_checks
from common.swarm.republish_cli import declared_snapshots

ALL = [*topology.SERVICES, topology.GATEWAY]


class ThingSchema(Schema):
    name = fields.Str()


def test_every_manifest_is_valid_on_its_own_and_with_the_others() -> None:
    manifests = topology.manifests(ALL)

    topology.validate_all(manifests)

    assert [m.name for m in manifests] == [spec.name for spec in ALL]


@pytest.mark.parametrize("spec", ALL, ids=lambda spec: spec.name)
def test_the_app_a_manifest_names_builds_the_service_with_its_handler_table(
    spec: topology.ServiceSpec, make_settings
) -> None:  # type: ignore[no-untyped-def]
    app = spec.app_factory()(make_settings(service_name=spec.name))  # builds only: nothing connects yet

    assert app.router.routes()


def test_every_consumed_event_has_a_handler_and_every_handler_a_declared_event() -> None:
    from comment_svc.consumers import HANDLERS as COMMENT_HANDLERS
    from notif_svc.consumers import build_handlers
    from project_svc.consumers import HANDLERS as PROJECT_HANDLERS

    tables = {
        "project_svc": PROJECT_HANDLERS,
        "comment_svc": COMMENT_HANDLERS,
        "notif_svc": build_handlers(None),  # type: ignore[arg-type]
    }
    for name, handlers in tables.items():
        assert topology.manifest_of(name).checked_handlers(handlers) is handlers
    assert not topology.manifest_of("auth_svc").consumes


def test_an_app_whose_handlers_miss_a_consumed_event_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    # The check runs while the app is built, before anything connects: plain settings do.
    import project_svc.app
    from project_svc.consumers import HANDLERS

    monkeypatch.setattr(project_svc.app, "HANDLERS", {k: v for k, v in HANDLERS.items() if k != "newComment"})

    with pytest.raises(ManifestError, match="no handler for newComment"):
        project_svc.app.create_app(Settings(service_name="project_svc"))


def test_a_handler_for_an_event_the_manifest_does_not_consume_is_refused() -> None:
    manifest = ServiceManifest(name="demo_svc", app="tests.common.swarm.fake_services:create_app", consumes={})

    async def handle(event, conn):  # type: ignore[no-untyped-def]
        return None

    with pytest.raises(ManifestError, match="handlers for undeclared newThing"):
        manifest.checked_handlers({"newThing": handle})


def test_a_published_event_without_a_schema_is_refused() -> None:
    manifest = ServiceManifest(
        name="demo_svc",
        app="tests.common.swarm.fake_services:create_app",
        publishes={"newThing": ThingSchema, "oldThing": None},  # type: ignore[dict-item]
    )

    with pytest.raises(ManifestError, match="publishes 'oldThing'"):
        validate(manifest)


def test_a_misspelt_app_factory_is_refused() -> None:
    manifest = ServiceManifest(name="demo_svc", app="tests.common.swarm.fake_services:create_ap")

    with pytest.raises(ManifestError, match="create_ap"):
        validate(manifest)


def test_a_replica_check_naming_an_undeclared_query_is_refused() -> None:
    real = topology.manifest_of("notif_svc")
    misspelt = dataclasses.replace(
        real, replica_checks=(Invariant("notif_svc.duplicates", "notif_svc", "duplicate_notification"),)
    )

    with pytest.raises(ManifestError, match="duplicate_notification"):
        validate(misspelt)


def test_a_mirror_whose_source_does_not_declare_its_query_is_refused() -> None:
    manifests = topology.manifests(ALL)
    project = next(m for m in manifests if m.name == "project_svc")
    wrong = dataclasses.replace(
        project, replica_checks=(Mirror("project_svc.users", "auth_svc", "user", "project_svc", "users"),)
    )

    with pytest.raises(ManifestError, match="auth_svc declares no query 'user'"):
        topology.validate_all([m if m is not project else wrong for m in manifests])


def test_swarm_check_reads_every_declared_check_with_both_of_its_queries() -> None:
    names = [spec.name for spec in topology.SERVICES]
    plan = declared_checks(names)

    declared = [check.name for m in topology.manifests() for check in m.replica_checks]
    assert [check.name for check in plan.checks] == declared
    assert len(declared) == 10
    for check in plan.checks:
        sides = (
            [(check.source, check.source_query), (check.replica, check.replica_query)]
            if isinstance(check, Mirror)
            else [(check.service, check.query)]
        )
        assert all(side in plan.queries for side in sides)


def test_swarm_republish_offers_every_snapshot_the_manifests_declare() -> None:
    offered = declared_snapshots(spec.name for spec in topology.SERVICES)

    assert {kind: source.service for kind, source in offered.items()} == {
        "users": "auth_svc",
        "projects": "project_svc",
        "cards": "project_svc",
        "comments": "comment_svc",
    }


def test_a_package_without_a_manifest_fails_loudly() -> None:
    with pytest.raises(ManifestError, match="no manifest"):
        topology.manifest_of("tests")
