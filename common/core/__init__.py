"""The ground floor: settings, domain errors, the event envelope, logging, ids and cursors, paging, retry
and task helpers. Imports nothing of `common`; everything else may import it."""
