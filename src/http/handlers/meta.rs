//! The routes about the server itself rather than an account: the published keys, the
//! OpenAPI document and the health check.

use hyper::StatusCode;
use hyper::header::{CACHE_CONTROL, ETAG, HeaderValue, IF_NONE_MATCH};
use sha2::{Digest, Sha256};

use crate::http::Api;
use crate::http::dto::{HealthResponse, PublicKeyEntry, PublicKeyList, Timestamp};
use crate::http::error::ApiError;
use crate::http::request::Request;
use crate::http::response::{
    Response, empty_response, error_response, json_response, static_response,
};

/// `GET /auth/keys`: every key that can still verify a token, and the `next` key published
/// ahead, as PASERK, with an ETag that changes when the set or a status changes (statuses
/// as of now: a `next` key turns active at its time). No credential needed.
pub fn public_keys(api: &Api, request: &Request) -> Result<Response, ApiError> {
    let key_ring = api.app.key_ring();
    let now = api.app.clock.now_unix_seconds();
    let mut keys: Vec<PublicKeyEntry> = key_ring
        .keys()
        .iter()
        .map(|key| PublicKeyEntry {
            id: key.key_id.clone(),
            key: key.public_key_paserk.clone(),
            status: key_ring.status_at(key, now).name(),
            created: Timestamp(key.created),
        })
        .collect();
    // The active key first, then the next one, then the retired ones, newest first.
    let rank = |status: &str| match status {
        "active" => 0,
        "next" => 1,
        _ => 2,
    };
    keys.sort_by(|left, right| {
        rank(left.status)
            .cmp(&rank(right.status))
            .then(right.created.0.cmp(&left.created.0))
            .then(left.id.cmp(&right.id))
    });
    let mut fingerprint = Sha256::new();
    for key in &keys {
        fingerprint.update(key.id.as_bytes());
        fingerprint.update(key.status.as_bytes());
    }
    let etag = format!(
        "\"{}\"",
        &base16ct::lower::encode_string(&fingerprint.finalize())[..32]
    );
    let not_modified = request
        .parts
        .headers
        .get(IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag));
    let mut response = if not_modified {
        empty_response(StatusCode::NOT_MODIFIED)
    } else {
        json_response(StatusCode::OK, &PublicKeyList { keys })
    };
    let headers = response.headers_mut();
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(ETAG, value);
    }
    Ok(response)
}

/// `GET /openapi.json`: the server's own OpenAPI 3.1 document (the vendor's schema names
/// where they exist; every status each route can answer). A test keeps it in step with
/// `Route`.
pub fn openapi_document() -> Response {
    static_response("application/json", include_bytes!("../openapi.json"))
}

/// `GET` and `HEAD /health`: 200 while serving, 503 while draining or while the store
/// does not answer (PostgreSQL out of reach), so that a load balancer sends the requests to
/// another node.
pub async fn health(api: &Api) -> Result<Response, ApiError> {
    if api.app.is_draining() {
        return Ok(error_response(&ApiError::Draining));
    }
    if !api.app.store_is_reachable().await {
        return Ok(error_response(&ApiError::StoreUnavailable(
            "no answer to the health probe".into(),
        )));
    }
    Ok(json_response(
        StatusCode::OK,
        &HealthResponse { status: "ok" },
    ))
}
