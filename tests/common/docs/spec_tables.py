"""The parts of SPEC.md (kept beside the repository, in `shared/`) these tests hold the documents to,
copied here so the suite does not depend on a file outside the repository: the method and path of
every route of §3 (tables and prose), and the §4 event table (events, producers, consumer groups)."""

from __future__ import annotations

SPEC_SECTION_3_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/admin/dlq"),
        ("DELETE", "/admin/dlq/{id}"),
        ("POST", "/admin/dlq/{id}/replay"),
        ("GET", "/admin/events/{event_id}"),
        ("GET", "/admin/streams"),
        ("GET", "/admin/streams/{stream}"),
        ("GET", "/admin/streams/{stream}/entries"),
        ("GET", "/admin/streams/{stream}/pending/{group}"),
        ("GET", "/api/v1/openapi.json"),
        ("POST", "/auth/login"),
        ("POST", "/auth/logout"),
        ("POST", "/auth/refresh"),
        ("POST", "/auth/register"),
        ("GET", "/cards"),
        ("GET", "/cards/{card_id}/comments"),
        ("POST", "/cards/{card_id}/comments"),
        ("DELETE", "/cards/{id}"),
        ("GET", "/cards/{id}"),
        ("PATCH", "/cards/{id}"),
        ("DELETE", "/comments/{id}"),
        ("GET", "/comments/{id}"),
        ("PATCH", "/comments/{id}"),
        ("GET", "/docs"),
        ("GET", "/health"),
        ("GET", "/notifications"),
        ("POST", "/notifications/read-all"),
        ("GET", "/notifications/unread-count"),
        ("POST", "/notifications/{id}/read"),
        ("GET", "/projects"),
        ("POST", "/projects"),
        ("DELETE", "/projects/{id}"),
        ("GET", "/projects/{id}"),
        ("PATCH", "/projects/{id}"),
        ("GET", "/projects/{id}/cards"),
        ("POST", "/projects/{id}/cards"),
        ("POST", "/projects/{id}/members"),
        ("DELETE", "/projects/{id}/members/{user_id}"),
        ("GET", "/users"),
        ("GET", "/users/me"),
        ("PATCH", "/users/me"),
        ("POST", "/users/me/password"),
        ("GET", "/users/{id}"),
        ("PATCH", "/users/{id}/role"),
        ("GET", "/ws"),
    }
)

# (events, producers, consumer groups), as the §4 table lists them.
SPEC_SECTION_4_ROWS: tuple[tuple[str, str, str], ...] = (
    ("newUser, updateUser", "auth_svc", "project_svc, comment_svc, notif_svc"),
    ("newProject, updateProject, deleteProject", "project_svc", "comment_svc"),
    ("addMember, removeMember", "project_svc", "comment_svc"),
    ("newCard, updateCard, changeCardStatus, deleteCard", "project_svc", "comment_svc"),
    ("newComment, updateComment, deleteComment", "comment_svc", "project_svc"),
    ("newNotif", "auth_svc, project_svc, comment_svc", "notif_svc"),
)
