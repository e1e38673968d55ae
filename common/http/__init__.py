"""The aiohttp edge of a service: the app factory and its middlewares, the cleanup contexts that run a
`Runtime` inside the app, request validation, doc markers for handlers, metrics route labels."""
