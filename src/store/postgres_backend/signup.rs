//! Store functions for sign-up and emailed tokens on PostgreSQL, as `redb_backend/signup.rs`.
