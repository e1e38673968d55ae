"""PostgreSQL as every service uses it: the pool and single connections (with the same codecs), the
migration runner, and the version-guarded upserts replicas are kept with."""
