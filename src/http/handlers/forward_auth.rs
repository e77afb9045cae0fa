//! `GET`/`HEAD /auth/forward` (API.md section 9): a reverse proxy asks whether the request it
//! holds may pass. The original URL and method come from the proxy's headers, believed only
//! from `trusted_proxies`; the answer is 200 with the `Remote-*` headers, 403 from a rule, or,
//! without a valid credential, 401 (or a redirect to the sign-in page).

use hyper::header::{HeaderMap, HeaderName, HeaderValue, LOCATION};
use hyper::{Method, StatusCode};

use crate::auth::Identity;
use crate::auth::client::is_trusted_proxy;
use crate::auth::forward_auth::{ForwardRefusal, OriginalRequest, check_forward_rules};
use crate::auth::return_url::check_return_url;
use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::request::Request;
use crate::http::response::{Response, empty_response};

// Named once, so that no request parses them again to look them up or to set them.
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
const REMOTE_USER: HeaderName = HeaderName::from_static("remote-user");
const REMOTE_EMAIL: HeaderName = HeaderName::from_static("remote-email");
const REMOTE_NAME: HeaderName = HeaderName::from_static("remote-name");
const REMOTE_GROUPS: HeaderName = HeaderName::from_static("remote-groups");
const REMOTE_USER_ID: HeaderName = HeaderName::from_static("remote-user-id");
const REMOTE_ROLE: HeaderName = HeaderName::from_static("remote-role");
const REMOTE_PERMISSIONS: HeaderName = HeaderName::from_static("remote-permissions");
const REMOTE_SESSION: HeaderName = HeaderName::from_static("remote-session");

/// The request the proxy holds, from its headers.
#[derive(Debug)]
struct ForwardedRequest {
    /// Absolute, as the url crate writes it.
    url: url::Url,
    /// `X-Forwarded-Method`, when sent and readable.
    method: Option<Method>,
}

/// The answer to a valid credential: 200 with the `Remote-*` headers, or 403 from the first
/// rule that covers the original URL.
pub fn forward(api: &Api, request: &Request, identity: Identity) -> Result<Response, ApiError> {
    let rules = &api.app.config.forward_auth.rules;
    // Without rules nothing looks at the original URL, so it is not even parsed.
    if !rules.is_empty() {
        let original = forwarded_request(api, request).and_then(|forwarded| {
            let host = forwarded.url.host_str()?;
            Some(OriginalRequest::new(host, forwarded.url.path()))
        });
        check_forward_rules(rules, original.as_ref(), &identity).map_err(
            |refusal| match refusal {
                ForwardRefusal::MissingPermission(permission) => {
                    ApiError::MissingPermission(permission)
                }
                ForwardRefusal::MissingRole(role) => ApiError::MissingRole(role),
                ForwardRefusal::Denied => ApiError::ForwardDenied,
                ForwardRefusal::OriginalUrlUnknown => ApiError::OriginalUrlUnknown,
            },
        )?;
    }
    let mut response = empty_response(StatusCode::OK);
    insert_identity_headers(response.headers_mut(), identity);
    Ok(response)
}

/// The answer without a valid credential: 401, or with `?redirect=true` (for a proxy that
/// hands the answer to the browser) a 302 to the sign-in page, carrying the original URL as
/// `ret-url` when the ret-url rule allows it. Only a GET or HEAD is sent there: a form post
/// cannot be replayed after signing in.
pub fn unauthenticated(api: &Api, request: &Request) -> Result<Response, ApiError> {
    if request.query.boolean("redirect")? != Some(true) {
        return Err(ApiError::Unauthenticated);
    }
    let forwarded = forwarded_request(api, request);
    let navigable = forwarded.as_ref().is_none_or(|forwarded| {
        forwarded
            .method
            .as_ref()
            .is_none_or(|method| method == Method::GET || method == Method::HEAD)
    });
    if !navigable {
        return Err(ApiError::Unauthenticated);
    }
    let return_url = forwarded.and_then(|forwarded| {
        check_return_url(
            forwarded.url.as_str(),
            &api.app.config.auth.allowed_return_origins,
        )
    });
    let mut location = format!("{}/sign-in", api.public_origin);
    if let Some(return_url) = return_url {
        location.push_str("?ret-url=");
        location.extend(url::form_urlencoded::byte_serialize(return_url.as_bytes()));
    }
    let location = HeaderValue::from_str(&location)
        .map_err(|_| ApiError::Internal("sign-in location is no header value".to_owned()))?;
    let mut response = empty_response(StatusCode::FOUND);
    response.headers_mut().insert(LOCATION, location);
    Ok(response)
}

/// The original request, from `X-Original-URL` (nginx) or `X-Forwarded-Proto`, `-Host` and
/// `-Uri` (Caddy, Traefik), with `X-Forwarded-Method`: `None` when the peer is not a trusted
/// proxy (then nothing it claims is read), or the headers do not make one http(s) URL, or
/// both forms are sent and disagree.
fn forwarded_request(api: &Api, request: &Request) -> Option<ForwardedRequest> {
    if !is_trusted_proxy(request.peer.ip(), &api.app.config.server.trusted_proxies) {
        return None;
    }
    let headers = &request.parts.headers;
    let sends_forwarded = [X_FORWARDED_PROTO, X_FORWARDED_HOST, X_FORWARDED_URI]
        .iter()
        .any(|name| headers.contains_key(name));
    let from_forwarded = sends_forwarded
        .then(|| {
            let proto = single_header(headers, &X_FORWARDED_PROTO)?;
            let host = single_header(headers, &X_FORWARDED_HOST)?;
            let uri = single_header(headers, &X_FORWARDED_URI).unwrap_or("/");
            let host_is_plain = !host.is_empty()
                && host
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"-.:[]".contains(&byte));
            if !host_is_plain || !uri.starts_with('/') {
                return None;
            }
            plain_url(&format!("{proto}://{host}{uri}"))
        })
        .flatten();
    let url = match headers.get(&X_ORIGINAL_URL) {
        // Both forms must name the same URL: a proxy sets one form, and one that passes the
        // client's headers on (Caddy, Traefik) would otherwise let a client-sent
        // X-Original-URL stand for the URL it is really asking for.
        Some(_) => {
            let original = single_header(headers, &X_ORIGINAL_URL).and_then(plain_url)?;
            if sends_forwarded && from_forwarded.as_ref() != Some(&original) {
                return None;
            }
            original
        }
        None => from_forwarded?,
    };
    let method = single_header(headers, &X_FORWARDED_METHOD)
        .and_then(|method| Method::from_bytes(method.as_bytes()).ok());
    Some(ForwardedRequest { url, method })
}

/// An absolute http(s) URL with a host, no user information and no fragment. A browser never
/// sends a fragment, and nginx passes a request target's `#` on to the app as it came: an app
/// that takes `/public#/../admin` as a path serves `/admin`, while the rules would only have
/// seen `/public`, so such a URL is not believed.
fn plain_url(text: &str) -> Option<url::Url> {
    let url = url::Url::parse(text).ok()?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.fragment().is_none();
    plain.then_some(url)
}

/// A header's text when it is given exactly once (a list a second proxy appended to is
/// ambiguous, so it is not read).
fn single_header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|text| !text.contains(','))
}

/// The headers apps behind the proxy read: Authelia's and Tinyauth's names, then ours. The
/// identity is the request's own copy, so its strings become the values without copying.
fn insert_identity_headers(headers: &mut HeaderMap, identity: Identity) {
    let user = identity.user;
    let role = HeaderValue::from_static(user.role.name());
    let present = |part: &String| !part.is_empty();
    let name = match (
        user.first_name.filter(present),
        user.last_name.filter(present),
    ) {
        (Some(first), Some(last)) => format!("{first} {last}"),
        (Some(only), None) | (None, Some(only)) => only,
        (None, None) => String::new(),
    };
    let mut permissions = String::new();
    for (index, permission) in identity.effective_permissions.iter().enumerate() {
        if index > 0 {
            permissions.push(',');
        }
        permissions.push_str(permission.name());
    }
    let session = identity
        .session_id
        .map_or_else(String::new, |session_id| session_id.to_string());
    headers.reserve(8);
    headers.insert(REMOTE_USER, text_value(user.normalized_email));
    headers.insert(REMOTE_EMAIL, text_value(user.email));
    headers.insert(REMOTE_NAME, text_value(name));
    headers.insert(REMOTE_GROUPS, role.clone());
    headers.insert(REMOTE_USER_ID, HeaderValue::from(user.id));
    headers.insert(REMOTE_ROLE, role);
    headers.insert(REMOTE_PERMISSIONS, text_value(permissions));
    headers.insert(REMOTE_SESSION, text_value(session));
}

/// Names and addresses are checked to hold no control characters; bytes of UTF-8 go out as
/// they are (a header value's obs-text), never dropped or replaced.
fn text_value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}
