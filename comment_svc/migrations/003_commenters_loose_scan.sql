-- "Earlier commenters on the card" (comment_svc.store.commenters) runs under the card's row lock on
-- every new comment, so its cost must not grow with the card's comments: it walks the distinct authors
-- (a loose index scan) and each one's first comment, both straight off this index, never the rows.
CREATE INDEX comments_commenters_first ON comments (card_id, author_id, created_at);
DROP INDEX comments_commenters;
