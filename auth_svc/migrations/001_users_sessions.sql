CREATE TABLE users (
    id            uuid PRIMARY KEY,
    username      text NOT NULL,
    email         text NOT NULL,
    full_name     text NOT NULL DEFAULT '',
    password_hash text NOT NULL,
    role          text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin', 'superadmin')),
    -- Increases with every change; carried by newUser/updateUser so replicas never go backwards.
    version       bigint NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Usernames and emails are unique regardless of case; these also serve login by either.
CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
-- Prefix search on usernames (`?search=`) and the listing order.
CREATE INDEX users_username_pattern ON users (lower(username) text_pattern_ops);

-- A refresh session: one login on one device. Refresh tokens rotate; `refresh_jti` is the only one
-- that may still be spent. Presenting an older one means it leaked: the whole session is revoked.
CREATE TABLE sessions (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    refresh_jti    uuid NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_used_at   timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_reason text
);

CREATE INDEX sessions_live_by_user ON sessions (user_id) WHERE revoked_at IS NULL;
