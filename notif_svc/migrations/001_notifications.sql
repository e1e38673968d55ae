-- Users (newUser/updateUser): exactly common.replica.UserReplicaSchema's columns, kept version-guarded
-- by common.replica.replicate_user. Serves the actors' current usernames.
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

-- The two tables below are the PostgreSQL notification store (store_postgres.py). They exist in every
-- deployment, but stay empty when notifications live in MongoDB (MONGO_URL set; store_mongo.py).

-- One row per (newNotif event, recipient). The unique key makes a repeated event insert nothing.
-- `created_at` is when notif_svc stored it (millisecond precision, like MongoDB's dates), not when the
-- event was produced: the feed is ordered by what its reader could have seen.
CREATE TABLE notifications (
    id             uuid PRIMARY KEY,
    event_id       uuid NOT NULL,
    recipient_id   uuid NOT NULL,
    type           text NOT NULL,
    message        text NOT NULL,
    actor_id       uuid,            -- null: the system (reminders)
    actor_username text,            -- as the event said; the users replica's current name wins when known
    project_id     uuid,
    card_id        uuid,
    comment_id     uuid,
    read           boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL,
    CONSTRAINT notifications_once UNIQUE (event_id, recipient_id)
);

-- A user's feed, newest first, keyset-paginated on (created_at, id).
CREATE INDEX notifications_feed ON notifications (recipient_id, created_at DESC, id DESC);
-- The unread feed, the unread count and read-all touch only unread rows.
CREATE INDEX notifications_unread ON notifications (recipient_id, created_at DESC, id DESC) WHERE NOT read;

-- Per-user feed state: `version` increases with every change of the user's feed (new notification, read
-- marks), `modified_at` is when. The polling contract's ETag and Last-Modified come from this one row,
-- so a conditional poll that is not modified costs a primary-key lookup, never a feed query.
CREATE TABLE feed_state (
    user_id     uuid PRIMARY KEY,
    version     bigint NOT NULL,
    modified_at timestamptz NOT NULL
);
