"""The services' fragments of the gateway's OpenAPI document (`gateway/openapi/<service>.json`): committed
files equal to what the code makes now, merged into the very document the gateway used to build from the
services' route tables, and read by a gateway process that imports no service's handlers, use cases,
stores or consumers (issue 14 item 3)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import orjson
import pytest

from common.docs.merge import DocumentConflict, merge_documents
from common.docs.openapi import OpenAPIBuilder
from gateway import apidocs, docfragments
from tests.common.docs.conftest import REPO_ROOT

SERVICES = ("auth_svc", "project_svc", "comment_svc", "notif_svc")
SERVICE_CODE = ("api", "service", "store", "consumers")


def built_the_old_way(services: tuple[str, ...]) -> dict[str, Any]:
    """The document as the gateway built it before the fragments: every service's routes in one builder."""
    builder = OpenAPIBuilder("Taskswarm API", description=apidocs.DESCRIPTION)
    for service in services:
        docfragments.add_service(builder, service)
    apidocs.add_gateway_operations(builder)
    return builder.to_dict()


def test_every_routed_service_has_a_fragment_and_no_other_fragment_is_left() -> None:
    assert docfragments.routed_services() == SERVICES
    assert sorted(path.stem for path in docfragments.FRAGMENTS_DIR.glob("*.json")) == sorted(SERVICES)


def test_the_committed_fragments_are_what_the_code_makes_now() -> None:
    # A route, a @doc, a schema or the routing table changed without `python -m gateway.docfragments`.
    assert docfragments.stale() == [], "run python -m gateway.docfragments"


@pytest.mark.parametrize("services", [SERVICES, ("auth_svc",), ("project_svc", "notif_svc")])
def test_the_served_document_is_the_one_built_from_the_route_tables(services: tuple[str, ...]) -> None:
    served = apidocs.build_openapi(services)
    assert served == built_the_old_way(services)
    assert orjson.loads(apidocs.build_documents(services).openapi) == served


def test_the_check_command_fails_on_a_stale_fragment(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for service in SERVICES:
        (tmp_path / f"{service}.json").write_bytes(docfragments.render(service))
    monkeypatch.setattr(docfragments, "FRAGMENTS_DIR", tmp_path)
    monkeypatch.setattr(apidocs, "FRAGMENTS_DIR", tmp_path)
    assert docfragments.main(["--check"]) == 0
    stale = tmp_path / "comment_svc.json"
    document = json.loads(stale.read_text())
    document["paths"].popitem()
    stale.write_text(json.dumps(document))
    (tmp_path / "gone_svc.json").write_text("{}")
    assert docfragments.stale() == [stale, tmp_path / "gone_svc.json"]
    assert docfragments.main(["--check"]) == 1
    assert docfragments.main([]) == 0
    assert docfragments.stale() == []
    assert not (tmp_path / "gone_svc.json").exists()


def test_merging_keeps_one_copy_of_a_shared_component_and_refuses_a_clash() -> None:
    def part(path: str, description: str) -> dict[str, Any]:
        return {
            "paths": {path: {"get": {"summary": path}}},
            "components": {"schemas": {"Card": {"type": "object", "description": description}}},
            "tags": [{"name": "t", "description": "d"}],
        }

    base = {"openapi": "3.0.3", "info": {"title": "x"}, "paths": {}, "components": {}}
    merged = merge_documents(base, [part("/b", "a card"), part("/a", "a card")])
    assert list(merged["paths"]) == ["/a", "/b"]
    assert merged["components"]["schemas"] == {"Card": {"type": "object", "description": "a card"}}
    assert merged["tags"] == [{"name": "t", "description": "d"}]
    with pytest.raises(DocumentConflict, match="components/schemas/Card"):
        merge_documents(base, [part("/a", "a card"), part("/b", "another card")])
    with pytest.raises(DocumentConflict, match="GET /a"):
        merge_documents(base, [part("/a", "a card"), part("/a", "a card")])


STARTUP = """
import json, sys
from common.core.settings import Settings
from gateway.app import create_app
from gateway.apidocs import DOCUMENTS
urls = ("http://127.0.0.1:9",)
settings = Settings.from_env({}, service_name="gateway", auth_url=urls, project_url=urls, comment_url=urls,
                             notif_url=urls, jwt_public_key_file=sys.argv[1])
app = create_app(settings)
documents = app[DOCUMENTS]
print(json.dumps({"modules": sorted(sys.modules), "paths": len(json.loads(documents.openapi)["paths"]),
                  "channels": len(json.loads(documents.asyncapi)["channels"])}))
"""


def test_starting_the_gateway_imports_no_service_handlers_use_cases_stores_or_consumers(servers) -> None:  # type: ignore[no-untyped-def]
    answer = subprocess.run(
        [sys.executable, "-c", STARTUP, str(servers.keys_dir / "jwt_public.pem")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    started = json.loads(answer.stdout.splitlines()[-1])
    assert started["paths"] == len(built_the_old_way(SERVICES)["paths"])  # every service's paths are there
    assert started["channels"] > 0
    loaded = [
        module
        for module in started["modules"]
        if module.partition(".")[0] in SERVICES and module.split(".")[1:2] and module.split(".")[1] in SERVICE_CODE
    ]
    assert loaded == []
    assert {f"{service}.manifest" for service in SERVICES} <= set(started["modules"])  # it did look at them
