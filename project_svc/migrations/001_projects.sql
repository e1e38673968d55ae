-- Local copy of auth_svc's users, kept by newUser/updateUser (common/replica.py). Columns match
-- common.replica.UserReplicaSchema; payload columns are nullable because an update may be the first
-- thing this replica hears of a user. Used to check "the user exists" and to show usernames.
CREATE TABLE users (
    id         uuid PRIMARY KEY,
    username   text,
    email      text,
    full_name  text,
    role       text,
    version    bigint NOT NULL,
    created_at timestamptz,
    updated_at timestamptz
);

CREATE TABLE projects (
    id          uuid PRIMARY KEY,
    title       text NOT NULL,
    description text NOT NULL DEFAULT '',
    -- No foreign key to users: the replica may lag behind a freshly registered owner.
    owner_id    uuid NOT NULL,
    -- Increases with every change; carried by newProject/updateProject so replicas never go backwards.
    version     bigint NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- A removed member stays as an inactive row so the membership version keeps counting up across
-- add / remove / re-add (comment_svc's replica of memberships is guarded by it).
CREATE TABLE members (
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL,
    role       text NOT NULL CHECK (role IN ('owner', 'member')),
    active     boolean NOT NULL DEFAULT true,
    version    bigint NOT NULL DEFAULT 1,
    added_at   timestamptz NOT NULL DEFAULT now(),
    removed_at timestamptz,
    PRIMARY KEY (project_id, user_id)
);

CREATE TABLE cards (
    id                     uuid PRIMARY KEY,
    project_id             uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    title                  text NOT NULL,
    description            text NOT NULL DEFAULT '',
    status                 text NOT NULL DEFAULT 'todo' CHECK (status IN ('todo', 'in_progress', 'review', 'done')),
    priority               text NOT NULL DEFAULT 'medium' CHECK (priority IN ('low', 'medium', 'high', 'urgent')),
    due_date               timestamptz,
    assignee_id            uuid,
    created_by             uuid NOT NULL,
    -- comment_svc's data, applied from comment events only when their own counter is newer.
    total_comments         integer NOT NULL DEFAULT 0,
    total_comments_version bigint NOT NULL DEFAULT 0,
    version                bigint NOT NULL DEFAULT 1,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);

-- "Which projects am I in": GET /projects, GET /cards (my projects), and the membership lookups.
CREATE INDEX members_active_by_user ON members (user_id) WHERE active;
-- GET /projects/{id}/cards, newest first with keyset pagination; also a project's cards on kick.
CREATE INDEX cards_by_project ON cards (project_id, created_at DESC, id DESC);
-- GET /cards?assignee_id=me (and per project with an assignee filter), newest first.
CREATE INDEX cards_by_assignee ON cards (assignee_id, created_at DESC, id DESC);
-- GET /projects/{id}/cards?status=..., the board's columns, newest first.
CREATE INDEX cards_by_project_status ON cards (project_id, status, created_at DESC, id DESC);
-- Due-date reminders (step 3) and ?due_before=: only open cards that have a due date.
CREATE INDEX cards_open_due ON cards (due_date) WHERE status <> 'done' AND due_date IS NOT NULL;
-- Projects owned by a user (ownership checks, future "my own projects" views).
CREATE INDEX projects_by_owner ON projects (owner_id);
