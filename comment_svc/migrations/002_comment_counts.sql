-- Comment counts move out of the cards replica into a table of their own. The cards replica is a copy
-- of project_svc's data and may be wiped and rebuilt from a republished snapshot (swarm republish);
-- the counts are this service's own data (with the counter project_svc orders them by) and must
-- survive such a rebuild, or the next count published would carry a counter project_svc has already
-- seen, and be ignored.
CREATE TABLE card_comment_counts (
    card_id uuid PRIMARY KEY,
    total   integer NOT NULL CHECK (total >= 0),
    version bigint NOT NULL
);

INSERT INTO card_comment_counts (card_id, total, version)
SELECT id, total_comments, total_comments_version FROM cards WHERE total_comments_version > 0;

ALTER TABLE cards DROP COLUMN total_comments, DROP COLUMN total_comments_version;
