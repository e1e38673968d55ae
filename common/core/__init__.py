"""The ground floor: settings, domain errors, the event envelope, logging, formats (what a valid id,
number, name or time is), cursors, paging, retry and task helpers. Imports nothing of `common`;
everything else may import it."""
