-- Due-date reminders (card_due_soon, project_svc.reminders): the due date the assignee was last
-- reminded of. A reminder is due while it differs from the card's due date, so moving the due date
-- re-arms the reminder, and a card is reminded once per due date however many replicas scan.
ALTER TABLE cards ADD COLUMN reminded_due_date timestamptz;

-- The reminder scan: open, assigned cards not yet reminded of their current due date, by due date.
-- The predicate keeps the index down to the cards still waiting for a reminder (a reminded card leaves
-- it), so each scan reads only the cards it will remind instead of re-reading every card due within
-- the window. `cards_open_due` stays for `?due_before=`.
CREATE INDEX cards_awaiting_reminder ON cards (due_date)
    WHERE status <> 'done' AND assignee_id IS NOT NULL AND reminded_due_date IS DISTINCT FROM due_date;
