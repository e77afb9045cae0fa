//! `Request`, one request as the handlers see it: hyper's head, the peer, the decoded query
//! and the raw path parameters, with the body read at most once.

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::header;
use hyper::http::request::Parts;

use crate::auth::{self, ClientInfo};
use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::fields::{self, Fields};

/// One request as the handlers see it.
pub struct Request {
    pub parts: Parts,
    body: Option<Incoming>,
    pub peer: SocketAddr,
    pub query: Fields,
    pub path_parameters: Vec<(String, String)>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Request")
            .field("method", &self.parts.method)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Request {
    /// Wraps a routed request; the query is decoded now, the body when a handler asks.
    pub fn new(
        request: hyper::Request<Incoming>,
        peer: SocketAddr,
        path_parameters: Vec<(String, String)>,
    ) -> Request {
        let (parts, body) = request.into_parts();
        Request {
            query: Fields::from_query(parts.uri.query()),
            parts,
            body: Some(body),
            peer,
            path_parameters,
        }
    }

    /// Reads and decodes the body (once).
    pub async fn fields(&mut self, api: &Api) -> Result<Fields, ApiError> {
        let Some(body) = self.body.take() else {
            return Ok(Fields::empty());
        };
        fields::read_fields(&self.parts, body, api.app.config.http.max_body_bytes).await
    }

    pub fn client_info(&self, api: &Api) -> ClientInfo {
        // Several `X-Forwarded-For` lines are one list (RFC 9110, 5.3): a proxy that adds its
        // own line after the client's must not have the client's line read instead. An
        // unreadable line stays an entry that ends the walk from the right.
        let forwarded_lines: Vec<&str> = self
            .parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|value| value.to_str().unwrap_or("unreadable"))
            .collect();
        let forwarded_for = (!forwarded_lines.is_empty()).then(|| forwarded_lines.join(","));
        ClientInfo {
            remote_ip: auth::client::remote_ip(
                self.peer.ip(),
                forwarded_for.as_deref(),
                &api.app.config.server.trusted_proxies,
            )
            .to_string(),
            user_agent: self
                .parts
                .headers
                .get(header::USER_AGENT)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("")
                .to_owned(),
        }
    }
}
