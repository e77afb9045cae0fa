//! Store functions for OAuth identities on PostgreSQL, as `redb_backend/identities.rs`.
