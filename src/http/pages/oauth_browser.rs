//! `GET /frontend/api/v1/auth/oauth/{provider}/start` and `.../callback`: the browser
//! sign-in through a provider (API.md section 11), served with the pages because it ends on
//! them. The start answers 302 to the provider and sets the short-lived browser-binding
//! cookie; the callback signs in like `/sign-in` (the `jwt` cookie and a 303 to `ret-url`,
//! else `/account`), draws the second-factor page when the account holds one, and draws
//! every failure on the sign-in page in words, with its status.

use hyper::StatusCode;
use hyper::header::{self, HeaderValue};

use crate::auth::AuthError;
use crate::auth::oauth::OAuthSignInOutcome;
use crate::auth::oauth::browser::{self, BrowserCallback};
use crate::http::Api;
use crate::http::credential::cookie_value;
use crate::http::error::ApiError;
use crate::http::handlers::second_factor::audit_second_factor_required;
use crate::http::handlers::sign_in::checked_return_url;
use crate::http::pages::render::{self, add_page_headers};
use crate::http::pages::second_factor::{self, PendingSignIn, SecondFactorMethods};
use crate::http::pages::sign_in::{self, DEFAULT_DESTINATION};
use crate::http::pages::{Pages, page_identity};
use crate::http::request::Request;
use crate::http::response::{Response, append_session_cookie, empty_response};
use crate::http::routes::PREFIX;
use crate::model::Secret;
use crate::model::oauth_browser::OAUTH_BROWSER_STATE_LIFETIME_SECONDS;

/// Where the two routes live, below the API's prefix.
const ROUTES_UNDER: &str = "/auth/oauth/";
pub const START_TEMPLATE: &str = "/frontend/api/v1/auth/oauth/{provider}/start";
pub const CALLBACK_TEMPLATE: &str = "/frontend/api/v1/auth/oauth/{provider}/callback";

/// Which of the two routes a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OAuthBrowserStep {
    Start,
    Callback,
}

/// The step and the raw `{provider}` segment of a path, if it names one of the routes.
pub fn step_of_path(path: &str) -> Option<(OAuthBrowserStep, &str)> {
    let rest = path.strip_prefix(PREFIX)?.strip_prefix(ROUTES_UNDER)?;
    let (segment, step) = rest.split_once('/')?;
    if segment.is_empty() {
        return None;
    }
    match step {
        "start" => Some((OAuthBrowserStep::Start, segment)),
        "callback" => Some((OAuthBrowserStep::Callback, segment)),
        _ => None,
    }
}

/// A provider name as one path segment: every byte but the unreserved ones escaped.
fn path_segment(name: &str) -> String {
    name.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// A path segment with its `%XX` escapes decoded, if they are well formed.
fn decoded_segment(segment: &str) -> Option<Vec<u8>> {
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = std::str::from_utf8(bytes.get(index + 1..index + 3)?).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    Some(decoded)
}

/// The start link of a provider, with `ret-url` when given.
pub fn start_path(provider_name: &str, return_url: Option<&str>) -> String {
    let path = format!(
        "{PREFIX}{ROUTES_UNDER}{}/start",
        path_segment(provider_name)
    );
    match return_url {
        Some(return_url) => {
            let query: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("ret-url", return_url)
                .finish();
            format!("{path}?{query}")
        }
        None => path,
    }
}

/// The `redirect_uri` of a provider: its callback under the public URL.
fn redirect_uri(api: &Api, provider_name: &str) -> String {
    format!(
        "{}{PREFIX}{ROUTES_UNDER}{}/callback",
        api.public_origin,
        path_segment(provider_name)
    )
}

/// The name of the provider the request's path names; `NotFound` when it names none.
fn provider_of_request(api: &Api, request: &Request) -> Result<String, ApiError> {
    let (_, segment) = step_of_path(request.parts.uri.path()).ok_or(ApiError::NotFound)?;
    let name = decoded_segment(segment).ok_or(ApiError::NotFound)?;
    api.app
        .oauth
        .browser_providers()
        .find(|provider| provider.config.name.as_bytes() == name.as_slice())
        .map(|provider| provider.config.name.clone())
        .ok_or(ApiError::NotFound)
}

/// The browser-binding cookie's name: `__Host-` when it can be (https).
fn cookie_name(api: &Api) -> &'static str {
    if api.public_origin.is_https() {
        "__Host-latchkey-oauth"
    } else {
        "latchkey-oauth"
    }
}

/// The browser-binding cookie: HttpOnly, SameSite=Lax (it must come back with the
/// provider's top-level redirect), Secure under https, gone when the state would be.
fn binding_cookie(api: &Api, value: &str) -> Option<HeaderValue> {
    let secure = if api.public_origin.is_https() {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={OAUTH_BROWSER_STATE_LIFETIME_SECONDS}{secure}",
        cookie_name(api)
    ))
    .ok()
}

/// `GET .../oauth/{provider}/start`.
pub async fn start(api: &Api, pages: &Pages, request: &Request) -> Result<Response, ApiError> {
    let provider_name = provider_of_request(api, request)?;
    let return_url = checked_return_url(api, request.query.string("ret-url")?)?;
    if page_identity(api, request).await?.is_some() {
        return render::redirect(return_url.as_deref().unwrap_or(DEFAULT_DESTINATION));
    }
    let binding = cookie_value(&request.parts, cookie_name(api))?.map(Secret::new);
    let started = browser::start(
        &api.app,
        &request.client_info(api),
        &provider_name,
        return_url.clone(),
        binding,
        &redirect_uri(api, &provider_name),
    )
    .await;
    let started = match started {
        Ok(started) => started,
        Err(error) => {
            let error = ApiError::from(error);
            return sign_in::draw_with_problem(api, pages, request, return_url, &error);
        }
    };
    let location = HeaderValue::from_str(&started.authorization_url)
        .map_err(|_| ApiError::Internal("an authorization URL that is no header".to_owned()))?;
    let mut response = empty_response(StatusCode::FOUND);
    response.headers_mut().insert(header::LOCATION, location);
    if let Some(cookie) = binding_cookie(api, started.browser_binding.expose_secret()) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    add_page_headers(&mut response);
    Ok(response)
}

/// `GET .../oauth/{provider}/callback?code=&state=` (or `?error=&state=`).
pub async fn callback(api: &Api, pages: &Pages, request: &Request) -> Result<Response, ApiError> {
    let provider_name = provider_of_request(api, request)?;
    let client = request.client_info(api);
    let remote_ip = client.remote_ip.clone();
    let finished = browser::finish(
        &api.app,
        BrowserCallback {
            state: request.query.string("state")?,
            code: request.query.string("code")?.map(Secret::new),
            error: request.query.string("error")?,
            issuer: request.query.string("iss")?,
            browser_binding: cookie_value(&request.parts, cookie_name(api))?.map(Secret::new),
            client,
            redirect_uri: redirect_uri(api, &provider_name),
            provider: provider_name.clone(),
        },
    )
    .await;
    let return_url = finished.return_url;
    match finished.outcome {
        Ok(OAuthSignInOutcome::SignedIn { outcome, how }) => {
            tracing::info!(
                target: "latchkey::audit",
                event = "oauth-sign-in",
                provider = provider_name,
                flow = "browser",
                account = how.name(),
                user_id = outcome.user.id,
                session_id = %outcome.session.id,
                remote_ip = outcome.session.remote_ip,
            );
            let max_age = outcome.session.expire - outcome.session.created;
            let mut response =
                render::redirect(return_url.as_deref().unwrap_or(DEFAULT_DESTINATION))?;
            append_session_cookie(
                &mut response,
                api,
                outcome.signed_token.expose_secret(),
                max_age,
            );
            Ok(response)
        }
        Ok(OAuthSignInOutcome::Checked(_)) => Err(ApiError::Internal(
            "a browser sign-in answered a check".to_owned(),
        )),
        Err(error @ AuthError::SecondFactorRequired(_)) => {
            audit_second_factor_required(&error, "oauth", &remote_ip);
            let ApiError::SecondFactorRequired { mfa_token, methods } = ApiError::from(error)
            else {
                return Err(ApiError::Internal(
                    "a second step without its token".to_owned(),
                ));
            };
            let pending = PendingSignIn {
                mfa_token: mfa_token.into_exposed_secret(),
                return_url,
                methods: SecondFactorMethods::from_names(methods),
            };
            second_factor::draw(api, pages, request, Some(pending), None).await
        }
        Err(error) => {
            tracing::info!(
                target: "latchkey::audit",
                event = "oauth-sign-in-failed",
                provider = provider_name,
                flow = "browser",
                reason = %error,
                remote_ip,
            );
            let error = ApiError::from(error);
            sign_in::draw_with_problem(api, pages, request, return_url, &error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_name_round_trips_through_its_path_segment() {
        for name in ["google", "corp/idp", "a%b", "ünï", "x+y?z#"] {
            let path = start_path(name, None);
            let (step, segment) = step_of_path(&path).unwrap();
            assert_eq!(step, OAuthBrowserStep::Start);
            assert_eq!(decoded_segment(segment).unwrap(), name.as_bytes(), "{path}");
        }
        assert_eq!(step_of_path("/frontend/api/v1/auth/oauth//start"), None);
        assert_eq!(step_of_path("/frontend/api/v1/auth/oauth/x/other"), None);
        assert_eq!(
            start_path("idp", Some("/account?tab=1")),
            "/frontend/api/v1/auth/oauth/idp/start?ret-url=%2Faccount%3Ftab%3D1"
        );
    }
}
