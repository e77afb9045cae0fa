//! Reading the one credential a request carries (API.md section 1): the Authorization
//! header, then `?token=`, then `?jwt=`, then the `jwt` cookie; the first one present is the
//! only one looked at. Also the CSRF rule for cookie-authenticated writes.

use hyper::Method;
use hyper::header::{AUTHORIZATION, COOKIE, ORIGIN, REFERER};
use hyper::http::request::Parts;

use crate::auth::{PresentedCredential, looks_like_api_token};
use crate::config::Origin;
use crate::http::error::ApiError;
use crate::http::fields::Fields;

/// The credential found, owned, with where it came from.
#[derive(Clone, PartialEq, Eq)]
pub struct FoundCredential {
    pub value: String,
    pub is_api_token: bool,
    pub from_cookie: bool,
}

impl std::fmt::Debug for FoundCredential {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("FoundCredential")
            .field("value", &"***")
            .field("is_api_token", &self.is_api_token)
            .field("from_cookie", &self.from_cookie)
            .finish()
    }
}

impl FoundCredential {
    pub fn presented(&self) -> PresentedCredential<'_> {
        if self.is_api_token {
            PresentedCredential::ApiToken(&self.value)
        } else {
            PresentedCredential::SignedToken(&self.value)
        }
    }
}

/// Finds the credential, or `Ok(None)` when the request carries none. A malformed
/// Authorization header is an invalid credential, not an absent one.
pub fn find_credential(
    parts: &Parts,
    query: &Fields,
    query_credentials_allowed: bool,
) -> Result<Option<FoundCredential>, ApiError> {
    if let Some(header) = parts.headers.get(AUTHORIZATION) {
        let text = header.to_str().map_err(|_| ApiError::Unauthenticated)?;
        let (scheme, value) = text.split_once(' ').ok_or(ApiError::Unauthenticated)?;
        let value = value.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || value.is_empty() {
            return Err(ApiError::Unauthenticated);
        }
        return Ok(Some(FoundCredential {
            is_api_token: looks_like_api_token(value),
            value: value.to_owned(),
            from_cookie: false,
        }));
    }
    if query_credentials_allowed {
        // A repeated query credential is ambiguous: refuse it as invalid.
        if let Some(value) = query
            .string("token")
            .map_err(|_| ApiError::Unauthenticated)?
        {
            return Ok(Some(FoundCredential {
                value,
                is_api_token: true,
                from_cookie: false,
            }));
        }
        if let Some(value) = query.string("jwt").map_err(|_| ApiError::Unauthenticated)? {
            return Ok(Some(FoundCredential {
                value,
                is_api_token: false,
                from_cookie: false,
            }));
        }
    }
    if let Some(value) = cookie_value(parts, "jwt") {
        return Ok(Some(FoundCredential {
            value,
            is_api_token: false,
            from_cookie: true,
        }));
    }
    Ok(None)
}

/// The value of the first cookie with this name, across every Cookie header.
pub fn cookie_value(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|header| header.to_str().ok())
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(cookie_name, _)| *cookie_name == name)
        .map(|(_, value)| value.trim_matches('"').to_owned())
}

/// A cookie-authenticated request other than GET or HEAD must name an allowed origin in
/// `Origin` (failing that, `Referer`).
pub fn check_cookie_origin(
    parts: &Parts,
    public_origin: &Origin,
    allowed_origins: &[Origin],
) -> Result<(), ApiError> {
    if parts.method == Method::GET || parts.method == Method::HEAD {
        return Ok(());
    }
    let claimed = parts
        .headers
        .get(ORIGIN)
        .or_else(|| parts.headers.get(REFERER))
        .and_then(|value| value.to_str().ok())
        .and_then(|text| url::Url::parse(text).ok())
        .and_then(|url| Origin::from_url(&url));
    match claimed {
        Some(origin) if origin == *public_origin || allowed_origins.contains(&origin) => Ok(()),
        _ => Err(ApiError::CrossSiteRequest),
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn parts(authorization: Option<&str>, cookie: Option<&str>) -> Parts {
        let mut builder = hyper::Request::builder().method("DELETE").uri("/x");
        if let Some(value) = authorization {
            builder = builder.header(AUTHORIZATION, value);
        }
        if let Some(value) = cookie {
            builder = builder.header(COOKIE, value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    proptest! {
        #[test]
        fn any_header_query_or_cookie_is_read_without_panicking(
            authorization in proptest::option::of("[ -~]{0,90}"),
            cookie in proptest::option::of("[ -~]{0,90}"),
            query in "[ -~]{0,90}",
        ) {
            let parts = parts(authorization.as_deref(), cookie.as_deref());
            let query = Fields::from_query(Some(&query));
            if let Ok(Some(found)) = find_credential(&parts, &query, true) {
                prop_assert!(!found.value.is_empty() || found.from_cookie || !found.is_api_token);
                if let Some(header) = authorization {
                    prop_assert_eq!(found.value, header.split_once(' ').unwrap().1.trim());
                }
            }
            let _ = check_cookie_origin(&parts, &"https://auth.example.com".parse().unwrap(), &[]);
        }

        #[test]
        fn a_bearer_header_is_an_api_token_exactly_when_it_has_the_shape(value in "[0-9a-fA-Fv4.public_-]{1,70}") {
            let parts = parts(Some(&format!("Bearer {value}")), None);
            let found = find_credential(&parts, &Fields::from_query(None), true).unwrap().unwrap();
            prop_assert_eq!(found.is_api_token, crate::auth::looks_like_api_token(&value));
        }
    }
}
