"""The durable queue: `store` owns the directory-state queue (one file per report, one rename
per transition), `lock` the one-owner-per-instance lock on it."""
