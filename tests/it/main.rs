//! The one integration-test binary: every test talks HTTP to a real server on 127.0.0.1
//! port 0 over a real redb file in a temp dir.

// Test code may panic: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod accounts;
mod api_tokens;
mod binary;
mod browser_harness;
mod browser_oauth;
mod browser_pages;
mod browser_passkeys;
mod browser_second_factor;
mod browser_support;
mod contract;
mod crash;
mod credentials;
mod decoding;
mod doc_references;
mod forward_auth;
mod hardening;
mod hostile_oauth_browser;
mod hostile_postgres;
mod hostile_second_factors;
mod keys;
mod mail_support;
mod metrics;
mod multi_node;
mod oauth;
mod oauth_browser;
mod oauth_provider;
mod operator;
mod page_support;
mod pages;
mod pages_account;
mod pages_second_factor;
mod passkey_authenticator;
mod passkeys;
mod proxy_support;
mod qr_code;
mod schema;
mod second_factor;
mod security_input;
mod security_keys;
mod security_oauth;
mod security_signup;
mod security_tokens;
mod shared_throttle;
mod sign_in;
mod signup;
mod store_copy;
mod store_outage;
mod support;
mod systemd;
mod tidy;
mod user_delete;
