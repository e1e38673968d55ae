"""Routing: every public path reaches its owning service, prefix stripped, query untouched."""

from __future__ import annotations

import pytest
from yarl import URL

from gateway.routing import Router, Rule
from tests.gateway.conftest import MakeToken, StartGateway, total_seen

ROUTED = [
    ("GET", "/api/v1/auth/jwks.json", "auth_svc", "/auth/jwks.json", ""),
    ("POST", "/api/v1/auth/logout", "auth_svc", "/auth/logout", ""),
    ("GET", "/api/v1/users?search=a%20b&limit=5", "auth_svc", "/users", "search=a%20b&limit=5"),
    ("PATCH", "/api/v1/users/me", "auth_svc", "/users/me", ""),
    ("GET", "/api/v1/projects/p1/cards?status=todo", "project_svc", "/projects/p1/cards", "status=todo"),
    ("GET", "/api/v1/cards?assignee_id=me&q=x%2Fy", "project_svc", "/cards", "assignee_id=me&q=x%2Fy"),
    ("DELETE", "/api/v1/cards/c1", "project_svc", "/cards/c1", ""),
    ("GET", "/api/v1/cards/c1/comments?limit=5", "comment_svc", "/cards/c1/comments", "limit=5"),
    ("POST", "/api/v1/cards/c1/comments", "comment_svc", "/cards/c1/comments", ""),
    ("PATCH", "/api/v1/comments/k1", "comment_svc", "/comments/k1", ""),
    ("GET", "/api/v1/notifications?unread=true", "notif_svc", "/notifications", "unread=true"),
    ("POST", "/api/v1/notifications/read-all", "notif_svc", "/notifications/read-all", ""),
    ("GET", "/api/v1/ws", "notif_svc", "/notifications/ws", ""),
]


@pytest.mark.parametrize(("method", "path", "service", "upstream_path", "query"), ROUTED, ids=[r[1] for r in ROUTED])
async def test_each_path_reaches_its_service_without_the_api_prefix(
    gateway, upstreams, make_token: MakeToken, method, path, service, upstream_path, query
):
    # encoded=True: send the path exactly as written (yarl would otherwise unquote %2F in the query)
    response = await gateway.request(method, URL(path, encoded=True), headers=make_token().headers)

    assert response.status == 200, await response.text()
    assert response.headers["X-Upstream"] == service
    (seen,) = upstreams[service].seen
    assert (seen.method, seen.path, seen.query) == (method, upstream_path, query)
    assert total_seen(upstreams) == 1


# `/api/v1/admin/...` is the gateway's own admin API (gateway/admin.py: 401 without a token; tests in
# tests/common/messaging/views).
UNKNOWN = ["/api/v1/nope", "/api/v1/", "/api/v1/usersx", "/api/v1/administration", "/api/v2/users", "/nowhere"]


@pytest.mark.parametrize("path", UNKNOWN)
async def test_a_path_no_service_owns_is_a_404_in_the_error_format(gateway, upstreams, path):
    response = await gateway.get(path)  # no token: a 404 says nothing a token would protect

    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"
    assert response.headers["X-Request-ID"]
    assert total_seen(upstreams) == 0


@pytest.mark.parametrize("path", ["/api/v1/openapi.json", "/api/v1/asyncapi.json"])
async def test_another_method_on_a_route_of_the_gateway_itself_is_a_405_with_allow(gateway, upstreams, path):
    response = await gateway.request("TRACE", path)

    assert response.status == 405
    assert response.headers["Allow"] == "GET,HEAD"
    assert (await response.json())["error"]["code"] == "method_not_allowed"
    assert total_seen(upstreams) == 0


@pytest.mark.parametrize("path", ["/api/v1/comments/k1", "/api/v1/cards/c1/comments"])
async def test_paths_of_a_service_not_configured_here_are_404_and_never_fall_through(
    start_gateway: StartGateway, upstreams, make_token: MakeToken, path
):
    gateway = await start_gateway(comment_url=())

    response = await gateway.get(path, headers=make_token().headers)

    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"
    assert total_seen(upstreams) == 0  # in particular, project_svc did not get /cards/c1/comments


async def test_requests_to_a_service_alternate_between_its_replicas(start_gateway: StartGateway, upstreams, make_token):
    second = upstreams["comment_svc"]  # any other echo server will do as project_svc's second replica
    gateway = await start_gateway(project_url=(upstreams["project_svc"].url, second.url))
    token = make_token()

    answered_by = []
    for _ in range(4):
        response = await gateway.get("/api/v1/projects", headers=token.headers)
        answered_by.append(response.headers["X-Upstream"])

    assert answered_by == ["project_svc", "comment_svc", "project_svc", "comment_svc"]
    assert all(seen.path == "/projects" for seen in second.seen)


async def test_a_replica_refusing_connections_is_skipped_even_for_a_post(
    start_gateway: StartGateway, upstreams, make_token, closed_url
):
    gateway = await start_gateway(project_url=(closed_url, upstreams["project_svc"].url))
    token = make_token()

    statuses = [(await gateway.post("/api/v1/projects", json={}, headers=token.headers)).status for _ in range(4)]

    assert statuses == [200, 200, 200, 200]
    assert len(upstreams["project_svc"].seen) == 4


def test_the_router_matches_whole_segments_only():
    router = Router({"auth_svc": ("http://auth/",), "project_svc": ("http://project",)})

    assert router.resolve("/users") is not None
    assert router.resolve("/users/me/password") is not None
    assert router.resolve("/usersx") is None
    assert router.resolve("users") is None
    assert router.resolve("") is None


def test_the_router_hands_out_base_urls_without_a_trailing_slash():
    router = Router({"auth_svc": ("http://auth/",)})

    target = router.resolve("/auth/login")

    assert target is not None
    assert target.replicas.urls == ("http://auth",)
    assert target.path == "/auth/login"


def test_a_wildcard_only_matches_a_non_empty_segment():
    router = Router({"project_svc": ("http://project",), "comment_svc": ("http://comment",)})

    target = router.resolve("/cards//comments")

    assert target is not None and target.replicas.service == "project_svc"


def test_a_rule_cannot_rewrite_a_prefix_with_wildcards():
    with pytest.raises(ValueError, match="wildcards"):
        Router({"comment_svc": ("http://c",)}, routes=(Rule("/cards/*/comments", "comment_svc", rewrite="/x"),))
