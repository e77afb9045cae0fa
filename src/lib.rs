//! Latchkey: a self-hosted authentication server in one binary, serving Probe.dev's Auth API
//! over hyper with its own embedded redb store.
//!
//! Reading order: `config` (settings), `model` (domain types), `store` (redb), `webauthn`
//! (the passkey relying party), `auth` (use cases, passwords, tokens), `http` (routes and
//! wire types), `server` (the accept loop), `app` (the shared state that ties them), `cli`
//! (the binary's commands).

pub mod admin;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod html;
pub mod http;
pub mod mail;
pub mod model;
pub mod rfc3339;
pub mod server;
pub mod store;
pub mod webauthn;

pub use app::App;
pub use config::Config;
pub use server::run;
