//! Building answers: JSON, empty, error, redirect and static bodies, the `jwt` session
//! cookie, the CORS preflight, and the headers every answer carries (`finish_headers`).

use bytes::Bytes;
use http_body_util::Full;
use hyper::StatusCode;
use hyper::header::{self, HeaderName, HeaderValue, InvalidHeaderValue};

use crate::http::Api;
use crate::http::dto;
use crate::http::error::ApiError;
use crate::http::routes::Route;
use crate::model::net::Origin;

pub type Response = hyper::Response<Full<Bytes>>;

pub fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    // Most answers fit in 1 KiB: one allocation instead of a series of doublings.
    let mut bytes = Vec::with_capacity(1024);
    if serde_json::to_writer(&mut bytes, body).is_err() {
        bytes.clear();
    }
    let mut response = hyper::Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub fn empty_response(status: StatusCode) -> Response {
    let mut response = hyper::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// A 200 whose body is bytes built into the binary, with their content type.
pub fn static_response(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut response = empty_response(StatusCode::OK);
    *response.body_mut() = Full::new(Bytes::from_static(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// `303 See Other` to `location`; an error when the text cannot be a header value.
pub fn see_other(location: &str) -> Result<Response, InvalidHeaderValue> {
    let location = HeaderValue::from_str(location)?;
    let mut response = empty_response(StatusCode::SEE_OTHER);
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

pub fn error_response(error: &ApiError) -> Response {
    let (status, code, message, context) = error.parts();
    let body = dto::ErrorBody {
        code,
        context,
        error: &message,
        status: status.canonical_reason().unwrap_or(""),
    };
    let mut response = json_response(status, &body);
    let headers = response.headers_mut();
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let ApiError::MethodNotAllowed(allowed) = error {
        headers.insert(header::ALLOW, HeaderValue::from_static(allowed));
    }
    if let Some(seconds) = error.retry_after_seconds() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    response
}

/// The `jwt` cookie: HttpOnly, SameSite=Lax, Secure when the public URL is https, and
/// `Domain` when `[session] cookie_domain` is set. An empty token with age 0 clears it.
pub fn session_cookie(api: &Api, token: &str, max_age_seconds: i64) -> HeaderValue {
    let secure = if api.public_origin.is_https() {
        "; Secure"
    } else {
        ""
    };
    let domain = api
        .app
        .config
        .session
        .cookie_domain
        .as_deref()
        .map_or_else(String::new, |domain| format!("; Domain={domain}"));
    let text = format!(
        "jwt={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_seconds}{domain}{secure}"
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("jwt=; Max-Age=0"))
}

/// Sets (or, with an empty token and age 0, clears) the `jwt` cookie on an answer. With
/// `[session] cookie_domain` set it first clears a host-only `jwt` cookie left from before:
/// a browser holding both would send two, which is refused as ambiguous.
pub fn append_session_cookie(
    response: &mut Response,
    api: &Api,
    token: &str,
    max_age_seconds: i64,
) {
    let headers = response.headers_mut();
    if let Some(stale) = clear_host_only_cookie(api) {
        headers.append(header::SET_COOKIE, stale);
    }
    headers.append(
        header::SET_COOKIE,
        session_cookie(api, token, max_age_seconds),
    );
}

fn clear_host_only_cookie(api: &Api) -> Option<HeaderValue> {
    api.app.config.session.cookie_domain.as_ref()?;
    let secure = if api.public_origin.is_https() {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "jwt=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"
    ))
    .ok()
}

/// The answer to a CORS preflight from a listed origin.
pub fn preflight_response(route: Route) -> Response {
    let mut response = empty_response(StatusCode::NO_CONTENT);
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(route.methods()),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, x-recaptcha-token"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

/// Headers every answer carries: no caching of credentials, no sniffing, no referrer; and
/// CORS for a listed origin.
pub fn finish_headers(response: &mut Response, cors_origin: Option<&Origin>) {
    let headers = response.headers_mut();
    let defaults: [(HeaderName, &str); 3] = [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in defaults {
        headers
            .entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    }
    if let Some(origin) = cors_origin
        && let Ok(value) = HeaderValue::from_str(&origin.to_string())
    {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}
