"""What a running service holds and measures: its `Runtime` (pool, Redis, verifier, loops), token
verification, the signing key pair, Prometheus metrics. Framework-free, so use cases can take a Runtime."""
