-- Latchkey's PostgreSQL schema, version 1: the tables the embedded backend keeps in redb,
-- as relations. Ids and times are those of the domain (user ids from a sequence, session and
-- passkey ids as UUIDs, Unix seconds as bigint); enums are their stored names, checked.
-- Token hashes are the SHA-256 of the secret (32 bytes): no table holds a usable credential.

CREATE TABLE store_facts (
    name text PRIMARY KEY,
    value text NOT NULL
);

CREATE SEQUENCE user_ids START WITH 1;

CREATE TABLE users (
    id bigint PRIMARY KEY CHECK (id > 0),
    email text NOT NULL,
    normalized_email text NOT NULL UNIQUE,
    password_hash text,
    role text NOT NULL CHECK (role IN ('root', 'admin', 'user', 'sub')),
    status text NOT NULL CHECK (status IN ('pending', 'active', 'suspended')),
    parent_id bigint REFERENCES users (id),
    first_name text,
    last_name text,
    permissions integer NOT NULL CHECK (permissions BETWEEN 0 AND 65535),
    created bigint NOT NULL,
    updated bigint NOT NULL,
    email_verified boolean NOT NULL,
    credential_version bigint NOT NULL CHECK (credential_version >= 0)
);
CREATE INDEX users_by_parent ON users (parent_id) WHERE parent_id IS NOT NULL;
-- The pending purge's index: sign-ups whose owner never proved the address.
CREATE INDEX unproved_sign_ups_by_created ON users (created, id)
    WHERE status = 'pending' AND NOT email_verified;

CREATE TABLE sessions (
    id uuid PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id),
    kind text NOT NULL CHECK (kind IN ('sign-in', 'minted')),
    created bigint NOT NULL,
    expire bigint NOT NULL,
    remote_ip text NOT NULL,
    user_agent text NOT NULL,
    ua_type text NOT NULL,
    granted_permissions integer NOT NULL CHECK (granted_permissions BETWEEN 0 AND 65535),
    -- The API token a sign-in handed out with this session (it ends with the session).
    api_token_hash bytea CHECK (octet_length(api_token_hash) = 32),
    -- The token that made this one (a minted token made by another token): at most one.
    made_by_api_token bytea CHECK (octet_length(made_by_api_token) = 32),
    made_by_session uuid,
    CHECK (made_by_api_token IS NULL OR made_by_session IS NULL)
);
CREATE INDEX sessions_by_user ON sessions (user_id, created);
CREATE INDEX sessions_by_expire ON sessions (expire);
CREATE INDEX sessions_by_maker_api_token ON sessions (made_by_api_token)
    WHERE made_by_api_token IS NOT NULL;
CREATE INDEX sessions_by_maker_session ON sessions (made_by_session)
    WHERE made_by_session IS NOT NULL;

CREATE TABLE api_tokens (
    hash bytea PRIMARY KEY CHECK (octet_length(hash) = 32),
    prefix text NOT NULL,
    user_id bigint NOT NULL REFERENCES users (id),
    -- Set for the token a sign-in hands out: it lives and dies with that session.
    session_id uuid REFERENCES sessions (id) ON DELETE CASCADE,
    permissions integer NOT NULL CHECK (permissions BETWEEN 0 AND 65535),
    restrictions integer NOT NULL CHECK (restrictions BETWEEN 0 AND 65535),
    created bigint NOT NULL,
    updated bigint NOT NULL,
    expires_at bigint,
    made_by_api_token bytea CHECK (octet_length(made_by_api_token) = 32),
    made_by_session uuid,
    CHECK (made_by_api_token IS NULL OR made_by_session IS NULL)
);
CREATE INDEX api_tokens_by_user ON api_tokens (user_id);
CREATE INDEX api_tokens_by_session ON api_tokens (session_id) WHERE session_id IS NOT NULL;
CREATE INDEX standalone_api_tokens_by_expiry ON api_tokens (expires_at)
    WHERE session_id IS NULL AND expires_at IS NOT NULL;
CREATE INDEX api_tokens_by_maker_api_token ON api_tokens (made_by_api_token)
    WHERE made_by_api_token IS NOT NULL;
CREATE INDEX api_tokens_by_maker_session ON api_tokens (made_by_session)
    WHERE made_by_session IS NOT NULL;

CREATE TABLE signing_keys (
    key_id text PRIMARY KEY,
    secret_key bytea NOT NULL,
    status text NOT NULL CHECK (status IN ('active', 'next', 'retired')),
    created bigint NOT NULL,
    retired_at bigint,
    activates_at bigint
);

-- Verification and reset links, by the SHA-256 of the token the mail carries.
CREATE TABLE email_tokens (
    hash bytea PRIMARY KEY CHECK (octet_length(hash) = 32),
    purpose text NOT NULL CHECK (purpose IN ('verify-email', 'reset-password')),
    user_id bigint NOT NULL REFERENCES users (id),
    expires_at bigint NOT NULL,
    -- A used link stays, so a second use is told apart from a bad link.
    used boolean NOT NULL DEFAULT false,
    -- A sign-up's link carries its attempt's password and names (API.md 15.5).
    attempt_password_hash text,
    attempt_first_name text,
    attempt_last_name text,
    CHECK (attempt_password_hash IS NOT NULL
           OR (attempt_first_name IS NULL AND attempt_last_name IS NULL))
);
CREATE INDEX email_tokens_by_user ON email_tokens (user_id);
CREATE INDEX email_tokens_by_expiry ON email_tokens (expires_at);

CREATE SEQUENCE mail_ids START WITH 1;

CREATE TABLE mail_queue (
    id bigint PRIMARY KEY,
    to_address text NOT NULL,
    subject text NOT NULL,
    text_body text NOT NULL,
    html_body text NOT NULL,
    attempts integer NOT NULL CHECK (attempts >= 0),
    next_attempt_at bigint NOT NULL
);
CREATE INDEX mail_queue_by_due ON mail_queue (next_attempt_at, id);
CREATE INDEX mail_queue_by_address ON mail_queue (to_address);

CREATE TABLE oauth_identities (
    provider text NOT NULL,
    subject text NOT NULL,
    user_id bigint NOT NULL REFERENCES users (id),
    linked bigint NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX oauth_identities_by_user ON oauth_identities (user_id, provider, subject);

CREATE TABLE active_totp (
    user_id bigint PRIMARY KEY REFERENCES users (id),
    secret bytea NOT NULL CHECK (octet_length(secret) = 20),
    enabled_at bigint NOT NULL,
    last_accepted_step bigint NOT NULL CHECK (last_accepted_step >= 0)
);

CREATE TABLE pending_totp (
    user_id bigint PRIMARY KEY REFERENCES users (id),
    secret bytea NOT NULL CHECK (octet_length(secret) = 20),
    created bigint NOT NULL,
    expires_at bigint NOT NULL
);

-- A user's unused recovery codes: each code's SHA-256 under the set's salt.
CREATE TABLE recovery_codes (
    user_id bigint PRIMARY KEY REFERENCES users (id),
    salt bytea NOT NULL,
    hashes bytea[] NOT NULL
);

-- Sign-ins awaiting their second factor, by the SHA-256 of the mfa-token.
CREATE TABLE mfa_tokens (
    hash bytea PRIMARY KEY CHECK (octet_length(hash) = 32),
    user_id bigint NOT NULL REFERENCES users (id),
    credential_version bigint NOT NULL,
    -- 'password', or the OAuth provider's name after 'oauth:'.
    first_factor text NOT NULL,
    long_term_token boolean NOT NULL,
    logout_other boolean NOT NULL,
    remote_ip text NOT NULL,
    user_agent text NOT NULL,
    replacement_password_hash text,
    created bigint NOT NULL,
    expires_at bigint NOT NULL,
    wrong_codes integer NOT NULL CHECK (wrong_codes >= 0)
);
CREATE INDEX mfa_tokens_by_user ON mfa_tokens (user_id);

CREATE TABLE passkeys (
    id uuid PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id),
    -- Unique in the whole store: a credential one user registered never signs in another.
    credential_id bytea NOT NULL UNIQUE,
    user_handle uuid NOT NULL,
    name text NOT NULL,
    created bigint NOT NULL,
    last_used bigint,
    -- The credential as crate::webauthn serialized it.
    credential bytea NOT NULL
);
CREATE INDEX passkeys_by_user ON passkeys (user_id, id);

CREATE TABLE passkey_challenges (
    id uuid PRIMARY KEY,
    kind text NOT NULL
        CHECK (kind IN ('registration', 'discoverable-sign-in', 'user-assertion')),
    user_id bigint REFERENCES users (id),
    user_handle uuid,
    expires_at bigint NOT NULL,
    state bytea NOT NULL
);
CREATE INDEX passkey_challenges_by_expiry ON passkey_challenges (expires_at, id);

-- Started browser OAuth sign-ins, by the SHA-256 of their state.
CREATE TABLE oauth_browser_states (
    state_hash bytea PRIMARY KEY CHECK (octet_length(state_hash) = 32),
    provider text NOT NULL,
    browser_binding_hash bytea NOT NULL CHECK (octet_length(browser_binding_hash) = 32),
    nonce text NOT NULL,
    pkce_verifier text NOT NULL,
    return_url text,
    expires_at bigint NOT NULL
);
CREATE INDEX oauth_browser_states_by_expiry ON oauth_browser_states (expires_at, state_hash);
