"""comment_svc HTTP handlers: parse and validate, call the service, shape the response."""

from __future__ import annotations

from aiohttp import web

from comment_svc.schemas import CommentListQuery, CommentPageSchema, CommentRequest, CommentSchema
from comment_svc.service import CommentService, comment_view
from common.http.app import json_response, principal
from common.http.docmarks import doc
from common.http.validation import parse_body, parse_query

COMMENT_SERVICE = web.AppKey("comment_service", CommentService)


def _service(request: web.Request) -> CommentService:
    return request.app[COMMENT_SERVICE]


@doc(
    "Comment on a card",
    description="Members of the card's project only. A card created a moment ago may not be known to "
    "comment_svc yet (its replica lags by milliseconds): a 404 then is worth one retry.",
    request=CommentRequest,
    response=CommentSchema,
    status=201,
)
async def create_comment(request: web.Request) -> web.Response:
    body = await parse_body(request, CommentRequest)
    comment = await _service(request).create(principal(request), request.match_info["card_id"], body["body"])
    return json_response(comment_view(comment), status=201)


@doc("A card's comments, oldest first", query=CommentListQuery, response=CommentPageSchema)
async def list_comments(request: web.Request) -> web.Response:
    query = parse_query(request, CommentListQuery)
    comments, next_cursor = await _service(request).list_for_card(
        principal(request), request.match_info["card_id"], query["limit"], query["cursor"]
    )
    return json_response({"items": [comment_view(c) for c in comments], "next_cursor": next_cursor})


@doc("A comment", response=CommentSchema)
async def get_comment(request: web.Request) -> web.Response:
    comment = await _service(request).get(principal(request), request.match_info["comment_id"])
    return json_response(comment_view(comment))


@doc(
    "Edit a comment",
    request=CommentRequest,
    response=CommentSchema,
    errors={403: "only its author may edit a comment"},
)
async def update_comment(request: web.Request) -> web.Response:
    body = await parse_body(request, CommentRequest)
    comment = await _service(request).update(principal(request), request.match_info["comment_id"], body["body"])
    return json_response(comment_view(comment))


@doc(
    "Delete a comment",
    status=204,
    errors={403: "only its author or the project owner may delete a comment"},
)
async def delete_comment(request: web.Request) -> web.Response:
    await _service(request).delete(principal(request), request.match_info["comment_id"])
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/cards/{card_id}/comments", create_comment)
    app.router.add_get("/cards/{card_id}/comments", list_comments)
    app.router.add_get("/comments/{comment_id}", get_comment)
    app.router.add_patch("/comments/{comment_id}", update_comment)
    app.router.add_delete("/comments/{comment_id}", delete_comment)
