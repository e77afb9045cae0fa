-- Latchkey's PostgreSQL schema, version 2: the rate limiters' token buckets, shared by every
-- node so that guesses and requests spread over nodes count as on one (API.md 13). A bucket
-- is named by its limiter ('password', 'requests', ...) and the SHA-256 of what it counts
-- (an account, a client network, both, a caller): no address or email is kept in clear.
-- Times are Unix seconds with their fraction. Each check is one statement on one row (or
-- three), taking no advisory lock; `idle_at` is when the bucket will be as if never drained
-- (full and unblocked), so the maintenance pass deletes it then, and, past a cap, deletes
-- the buckets that hold back least first.

CREATE TABLE throttle_buckets (
    limiter text NOT NULL,
    digest bytea NOT NULL CHECK (length(digest) = 32),
    capacity integer NOT NULL CHECK (capacity >= 1),
    seconds_per_token double precision NOT NULL CHECK (seconds_per_token > 0),
    tokens double precision NOT NULL,
    updated double precision NOT NULL,
    blocked_until double precision NOT NULL,
    lockouts integer NOT NULL CHECK (lockouts >= 0),
    idle_at double precision NOT NULL,
    PRIMARY KEY (limiter, digest)
);
CREATE INDEX throttle_buckets_by_idle_at ON throttle_buckets (idle_at);
