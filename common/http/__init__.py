"""The aiohttp edge of a service: the server (parser errors in the SPEC shape), the app factory and its
middlewares, the cleanup contexts that run a `Runtime` inside the app, body reading with a deadline,
security headers, request validation, doc markers for handlers, metrics route labels and endpoint."""
