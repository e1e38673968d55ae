"""project_svc HTTP handlers: parse and validate, call the service, shape the response."""

from __future__ import annotations

from aiohttp import web

from common.core.paging import offset_page
from common.http.app import json_response, principal
from common.http.docmarks import cursor_page_of, doc, offset_page_of
from common.http.validation import parse_body, parse_query
from project_svc.schemas import (
    AddMemberRequest,
    CardListQuery,
    CardSchema,
    CreateCardRequest,
    CreateProjectRequest,
    MemberSchema,
    ProjectDetailSchema,
    ProjectListQuery,
    ProjectSchema,
    UpdateCardRequest,
    UpdateProjectRequest,
)
from project_svc.service import ProjectService

PROJECT_SERVICE = web.AppKey("project_service", ProjectService)

_project_view = ProjectSchema()
_project_detail = ProjectDetailSchema()
_member_view = MemberSchema()
_card_view = CardSchema()


def _service(request: web.Request) -> ProjectService:
    return request.app[PROJECT_SERVICE]


def _no_content() -> web.Response:
    return web.Response(status=204)


# -- projects ---------------------------------------------------------------------------------------


@doc(
    "Create a project",
    description="The creator becomes its `owner`. Publishes `newProject` and `addMember`.",
    request=CreateProjectRequest,
    response=ProjectDetailSchema,
    status=201,
)
async def create_project(request: web.Request) -> web.Response:
    body = await parse_body(request, CreateProjectRequest)
    project = await _service(request).create_project(principal(request), body["title"], body["description"])
    return json_response(_project_detail.dump(project), status=201)


@doc(
    "The projects I am a member of",
    description="`?search=` on title.",
    query=ProjectListQuery,
    response=offset_page_of(ProjectSchema),
)
async def list_projects(request: web.Request) -> web.Response:
    query = parse_query(request, ProjectListQuery)
    projects, total = await _service(request).list_projects(
        principal(request), query["search"], query["limit"], query["offset"]
    )
    return json_response(offset_page(_project_view.dump(projects, many=True), total, query["limit"], query["offset"]))


@doc("A project with its members", response=ProjectDetailSchema)
async def get_project(request: web.Request) -> web.Response:
    project = await _service(request).get_project(principal(request), request.match_info["project_id"])
    return json_response(_project_detail.dump(project))


@doc(
    "Update a project",
    request=UpdateProjectRequest,
    response=ProjectDetailSchema,
    errors={403: "only the project owner can do this"},
)
async def update_project(request: web.Request) -> web.Response:
    body = await parse_body(request, UpdateProjectRequest)
    project = await _service(request).update_project(principal(request), request.match_info["project_id"], body)
    return json_response(_project_detail.dump(project))


@doc(
    "Delete a project",
    description="Deletes its cards, and (by event) their comments in comment_svc.",
    status=204,
    errors={403: "only the project owner can do this"},
)
async def delete_project(request: web.Request) -> web.Response:
    await _service(request).delete_project(principal(request), request.match_info["project_id"])
    return _no_content()


# -- members ----------------------------------------------------------------------------------------


@doc(
    "Add a member",
    description="The user must exist (checked against project_svc's user replica).",
    request=AddMemberRequest,
    response=MemberSchema,
    status=201,
    errors={
        403: "only the project owner can do this",
        404: "no such project (or not visible), or no such user (`user_not_found`)",
        409: "already a member (`already_member`)",
    },
)
async def add_member(request: web.Request) -> web.Response:
    body = await parse_body(request, AddMemberRequest)
    member = await _service(request).add_member(
        principal(request), request.match_info["project_id"], str(body["user_id"])
    )
    return json_response(_member_view.dump(member), status=201)


@doc(
    "Remove a member",
    description="Also unassigns their cards in the project.",
    status=204,
    errors={403: "only the project owner can do this", 409: "the owner cannot be removed (`owner_cannot_be_removed`)"},
)
async def remove_member(request: web.Request) -> web.Response:
    match = request.match_info
    await _service(request).remove_member(principal(request), match["project_id"], match["user_id"])
    return _no_content()


# -- cards ------------------------------------------------------------------------------------------


@doc(
    "Create a card",
    description="Members only; the assignee must be a member.",
    request=CreateCardRequest,
    response=CardSchema,
    status=201,
)
async def create_card(request: web.Request) -> web.Response:
    body = await parse_body(request, CreateCardRequest)
    card = await _service(request).create_card(principal(request), request.match_info["project_id"], body)
    return json_response(_card_view.dump(card), status=201)


async def _card_page(request: web.Request, project_id: str | None) -> web.Response:
    query = parse_query(request, CardListQuery)
    cards, next_cursor = await _service(request).list_cards(principal(request), project_id, query)
    return json_response({"items": _card_view.dump(cards, many=True), "next_cursor": next_cursor})


@doc(
    "A project's cards, newest first",
    query=CardListQuery,
    response=cursor_page_of(CardSchema),
)
async def list_project_cards(request: web.Request) -> web.Response:
    return await _card_page(request, request.match_info["project_id"])


@doc(
    "Search cards across my projects, newest first",
    description="`?assignee_id=me` for my own cards.",
    query=CardListQuery,
    response=cursor_page_of(CardSchema),
)
async def list_my_cards(request: web.Request) -> web.Response:
    return await _card_page(request, None)


@doc("A card, with its comment count", response=CardSchema)
async def get_card(request: web.Request) -> web.Response:
    card = await _service(request).get_card(principal(request), request.match_info["card_id"])
    return json_response(_card_view.dump(card))


@doc(
    "Update a card",
    description="Any member. Only the fields sent change; null clears `due_date` and unassigns. "
    "A status change publishes `changeCardStatus` as well as `updateCard`.",
    request=UpdateCardRequest,
    response=CardSchema,
)
async def update_card(request: web.Request) -> web.Response:
    body = await parse_body(request, UpdateCardRequest)
    card = await _service(request).update_card(principal(request), request.match_info["card_id"], body)
    return json_response(_card_view.dump(card))


@doc(
    "Delete a card",
    status=204,
    errors={403: "only the card's creator or the project owner can delete it"},
)
async def delete_card(request: web.Request) -> web.Response:
    await _service(request).delete_card(principal(request), request.match_info["card_id"])
    return _no_content()


def add_routes(app: web.Application) -> None:
    router = app.router
    router.add_post("/projects", create_project)
    router.add_get("/projects", list_projects)
    router.add_get("/projects/{project_id}", get_project)
    router.add_patch("/projects/{project_id}", update_project)
    router.add_delete("/projects/{project_id}", delete_project)
    router.add_post("/projects/{project_id}/members", add_member)
    router.add_delete("/projects/{project_id}/members/{user_id}", remove_member)
    router.add_post("/projects/{project_id}/cards", create_card)
    router.add_get("/projects/{project_id}/cards", list_project_cards)
    router.add_get("/cards", list_my_cards)
    router.add_get("/cards/{card_id}", get_card)
    router.add_patch("/cards/{card_id}", update_card)
    router.add_delete("/cards/{card_id}", delete_card)
