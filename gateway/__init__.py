"""The aiohttp edge: routes `/api/v1` to the owning services, checks tokens and rate limits first."""
