-- Replicas of other services' entities, kept by consumers.py from their events (docs/events.md).
-- Each row carries the source's `version`; writes are version-guarded (common.replica.upsert_if_newer),
-- so duplicates and late events change nothing. Payload columns are nullable because a tombstone or an
-- update may be the first thing we hear of an entity.

-- Users (newUser/updateUser): exactly common.replica.UserReplicaSchema's columns. Serves author names.
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

-- Projects (newProject/updateProject/deleteProject). `deleted` is a sticky tombstone: project updates
-- never write it, and the delete carries the highest version the project ever has.
CREATE TABLE projects (
    id       uuid PRIMARY KEY,
    title    text,
    owner_id uuid,
    version  bigint NOT NULL,
    deleted  boolean NOT NULL DEFAULT false
);

-- Memberships (addMember/removeMember), versioned per (project, user); a removed member stays as an
-- inactive row so a late addMember of an older version cannot bring them back. The primary key serves
-- the membership check of every request and the "drop this project's members" of deleteProject.
CREATE TABLE members (
    project_id uuid NOT NULL,
    user_id    uuid NOT NULL,
    role       text NOT NULL,
    version    bigint NOT NULL,
    active     boolean NOT NULL,
    PRIMARY KEY (project_id, user_id)
);

-- Cards (newCard/updateCard/changeCardStatus/deleteCard). The card's own columns come from project_svc;
-- the comment count is ours: bumped with its own counter in the same transaction as each comment insert
-- or delete, under this row's lock, and published with newComment/updateComment/deleteComment.
CREATE TABLE cards (
    id                     uuid PRIMARY KEY,
    project_id             uuid,
    title                  text,
    status                 text,
    created_by             uuid,
    assignee_id            uuid,
    version                bigint NOT NULL,
    deleted                boolean NOT NULL DEFAULT false,
    total_comments         integer NOT NULL DEFAULT 0,
    total_comments_version bigint NOT NULL DEFAULT 0
);

-- deleteProject marks every card of the project deleted.
CREATE INDEX cards_by_project ON cards (project_id);

-- Comments: the one entity this service owns.
CREATE TABLE comments (
    id         uuid PRIMARY KEY,
    card_id    uuid NOT NULL,
    project_id uuid NOT NULL,
    author_id  uuid NOT NULL,
    body       text NOT NULL,
    -- Increases with every change; carried by newComment/updateComment/deleteComment.
    version    bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- A card's feed, oldest first, keyset-paginated on (created_at, id); also deleteCard's "drop its comments".
CREATE INDEX comments_feed ON comments (card_id, created_at, id);
-- deleteProject's "drop its comments".
CREATE INDEX comments_by_project ON comments (project_id);
-- "Earlier commenters on the card", the recipients of comment_created notices (an index-only scan).
CREATE INDEX comments_commenters ON comments (card_id, author_id);
