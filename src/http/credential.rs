//! Reading the one credential a request carries (API.md section 1): the Authorization
//! header, then `?token=`, then `?jwt=`, then the `jwt` cookie; the first one present is the
//! only one looked at. A header or cookie given twice makes a request ambiguous, and is
//! refused (section 15, rule 17). Also the origin rules: CSRF for cookie-authenticated
//! writes, and login CSRF for form sign-ins (rule 11).

use std::borrow::Cow;

use hyper::Method;
use hyper::header::{
    AUTHORIZATION, CONTENT_TYPE, COOKIE, HeaderName, HeaderValue, ORIGIN, REFERER,
};
use hyper::http::request::Parts;

use crate::auth::{PresentedCredential, looks_like_api_token};
use crate::http::error::ApiError;
use crate::http::fields::Fields;
use crate::model::Secret;
use crate::model::net::Origin;

/// The credential found, owned, with where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundCredential {
    pub value: Secret<String>,
    pub is_api_token: bool,
    pub from_cookie: bool,
}

impl FoundCredential {
    pub fn presented(&self) -> PresentedCredential<'_> {
        let value = Secret::new(self.value.expose_secret().as_str());
        if self.is_api_token {
            PresentedCredential::ApiToken(value)
        } else {
            PresentedCredential::SignedToken(value)
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
    check_single_headers(parts)?;
    // Two `jwt` cookies (a sibling subdomain can plant one) are refused even when a header
    // credential would win: which session the browser means is unknowable.
    let cookie = cookie_value(parts, "jwt")?;
    if let Some(header) = parts.headers.get(AUTHORIZATION) {
        let text = header.to_str().map_err(|_| ApiError::Unauthenticated)?;
        let (scheme, value) = text.split_once(' ').ok_or(ApiError::Unauthenticated)?;
        let value = value.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || value.is_empty() {
            return Err(ApiError::Unauthenticated);
        }
        return Ok(Some(FoundCredential {
            is_api_token: looks_like_api_token(value),
            value: Secret::new(value.to_owned()),
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
                value: Secret::new(value),
                is_api_token: true,
                from_cookie: false,
            }));
        }
        if let Some(value) = query.string("jwt").map_err(|_| ApiError::Unauthenticated)? {
            return Ok(Some(FoundCredential {
                value: Secret::new(value),
                is_api_token: false,
                from_cookie: false,
            }));
        }
    }
    if let Some(value) = cookie {
        return Ok(Some(FoundCredential {
            value: Secret::new(value),
            is_api_token: false,
            from_cookie: true,
        }));
    }
    Ok(None)
}

/// Headers a request may carry at most once: with two, the server and a proxy in front of
/// it could each act on a different one.
const SINGLE_HEADERS: [(HeaderName, &str); 2] = [
    (AUTHORIZATION, "Authorization"),
    (CONTENT_TYPE, "Content-Type"),
];

/// Refuses a request that carries `Authorization` or `Content-Type` more than once (400
/// naming the header).
pub fn check_single_headers(parts: &Parts) -> Result<(), ApiError> {
    for (name, shown_name) in SINGLE_HEADERS {
        if parts.headers.get_all(name).iter().nth(1).is_some() {
            return Err(ApiError::InvalidField {
                field: Cow::Borrowed(shown_name),
                message: Cow::Borrowed("header is given more than once"),
            });
        }
    }
    Ok(())
}

/// The value of the cookie with this name, across every Cookie header; a name given twice
/// (in one header or several) is a 400 naming the cookie.
pub fn cookie_value(parts: &Parts, name: &str) -> Result<Option<String>, ApiError> {
    let mut values = parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|header| header.to_str().ok())
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(cookie_name, _)| cookie_name.trim() == name)
        .map(|(_, value)| value.trim().trim_matches('"').to_owned());
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::InvalidField {
            field: Cow::Owned(name.to_owned()),
            message: Cow::Borrowed("cookie is given more than once"),
        });
    }
    Ok(first)
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
        .or_else(|| parts.headers.get(REFERER));
    match claimed {
        Some(value) if is_allowed_origin(value, public_origin, allowed_origins) => Ok(()),
        _ => Err(ApiError::CrossSiteRequest),
    }
}

/// Login CSRF (API.md section 15, rule 11): a form-encoded sign-in whose `Origin` is neither
/// the public URL's nor an allowed return origin would sign the browser in to an account
/// the other site chose. Without `Origin` (a client that is no browser) it stays allowed,
/// unless the browser's own `Sec-Fetch-Site` says the post came from another origin.
pub fn check_form_sign_in_origin(
    parts: &Parts,
    public_origin: &Origin,
    allowed_origins: &[Origin],
) -> Result<(), ApiError> {
    match parts.headers.get(ORIGIN) {
        Some(value) if !is_allowed_origin(value, public_origin, allowed_origins) => {
            Err(ApiError::CrossSiteRequest)
        }
        Some(_) => Ok(()),
        None => match parts
            .headers
            .get("sec-fetch-site")
            .map(HeaderValue::as_bytes)
        {
            Some(b"cross-site" | b"same-site") => Err(ApiError::CrossSiteRequest),
            _ => Ok(()),
        },
    }
}

/// The one origin comparison: the header's URL, whose (scheme, host, port) is exactly the
/// public URL's or an allowed one. Unreadable values, `null` and URLs with user information
/// match nothing.
fn is_allowed_origin(value: &HeaderValue, public_origin: &Origin, allowed: &[Origin]) -> bool {
    claimed_origin(value)
        .is_some_and(|origin| origin == *public_origin || allowed.contains(&origin))
}

/// The origin an `Origin` (or `Referer`) header names, read the one way every comparison
/// (CSRF, login CSRF, CORS) reads it. A browser never puts user information in an origin, so
/// a value with any, even an empty one (`http://@host`, which URL parsing forgets), names
/// none and never matches.
pub fn claimed_origin(value: &HeaderValue) -> Option<Origin> {
    let text = value.to_str().ok()?;
    if authority_has_user_information(text) {
        return None;
    }
    let url = url::Url::parse(text).ok()?;
    Origin::from_url(&url)
}

/// Whether the text between `scheme://` and the path holds an `@`. The URL parser ends the
/// authority of an http(s) URL at `\` too.
fn authority_has_user_information(text: &str) -> bool {
    let Some((_, after_scheme)) = text.split_once("://") else {
        return false;
    };
    let authority_end = after_scheme
        .find(['/', '?', '#', '\\'])
        .unwrap_or(after_scheme.len());
    after_scheme[..authority_end].contains('@')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts_with(method: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = hyper::Request::builder().method(method).uri("/x");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn field_named(error: ApiError) -> String {
        match error {
            ApiError::InvalidField { field, .. } => field.into_owned(),
            other => panic!("not a field error: {other:?}"),
        }
    }

    #[test]
    fn a_repeated_authorization_content_type_or_jwt_cookie_is_named() {
        let query = Fields::from_query(None);
        let two_authorizations = parts_with(
            "GET",
            &[("authorization", "Bearer a"), ("authorization", "Bearer b")],
        );
        let error = find_credential(&two_authorizations, &query, true).unwrap_err();
        assert_eq!(field_named(error), "Authorization");
        let two_types = parts_with(
            "POST",
            &[
                ("content-type", "application/json"),
                ("content-type", "text/plain"),
            ],
        );
        assert_eq!(
            field_named(check_single_headers(&two_types).unwrap_err()),
            "Content-Type"
        );
        for cookies in [
            &["jwt=a; jwt=b"][..],
            &["jwt=a", "x=1; jwt=b"],
            &["jwt=a; jwt=a"],
        ] {
            let headers: Vec<(&str, &str)> =
                cookies.iter().map(|value| ("cookie", *value)).collect();
            let parts = parts_with("GET", &headers);
            assert_eq!(field_named(cookie_value(&parts, "jwt").unwrap_err()), "jwt");
            // Refused even where the Authorization header would be the credential read.
            let mut with_header = headers.clone();
            with_header.push(("authorization", "Bearer a"));
            let parts = parts_with("GET", &with_header);
            assert!(find_credential(&parts, &query, true).is_err());
        }
        let parts = parts_with("GET", &[("cookie", "jwtx=1; jwt=a; xjwt=2")]);
        assert_eq!(cookie_value(&parts, "jwt").unwrap().as_deref(), Some("a"));
    }

    #[test]
    fn origins_with_user_information_match_nothing() {
        let public: Origin = "https://auth.example.com".parse().unwrap();
        let allowed: Vec<Origin> = vec!["https://app.example.com".parse().unwrap()];
        for disguised in [
            "https://user@auth.example.com",
            "https://user:pass@auth.example.com",
            "https://@auth.example.com",
            "https://:@app.example.com",
            "https://app.example.com@evil.example",
        ] {
            let value = HeaderValue::from_str(disguised).unwrap();
            assert_eq!(claimed_origin(&value), None, "{disguised}");
            let parts = parts_with("POST", &[("origin", disguised)]);
            assert!(
                check_cookie_origin(&parts, &public, &allowed).is_err(),
                "{disguised}"
            );
            assert!(
                check_form_sign_in_origin(&parts, &public, &allowed).is_err(),
                "{disguised}"
            );
        }
        // An `@` in a Referer's path is no user information.
        let parts = parts_with("POST", &[("referer", "https://auth.example.com/u/a@b?x=@")]);
        assert!(check_cookie_origin(&parts, &public, &allowed).is_ok());
        for good in ["https://auth.example.com", "https://app.example.com:443"] {
            let parts = parts_with("POST", &[("origin", good)]);
            assert!(
                check_cookie_origin(&parts, &public, &allowed).is_ok(),
                "{good}"
            );
            assert!(
                check_form_sign_in_origin(&parts, &public, &allowed).is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn a_form_sign_in_needs_an_allowed_origin_only_when_it_names_one() {
        let public: Origin = "https://auth.example.com".parse().unwrap();
        let no_origin = parts_with("POST", &[]);
        assert!(check_form_sign_in_origin(&no_origin, &public, &[]).is_ok());
        // Unlike the cookie rule, a Referer alone is not consulted.
        let referer_only = parts_with("POST", &[("referer", "https://evil.example/")]);
        assert!(check_form_sign_in_origin(&referer_only, &public, &[]).is_ok());
        for foreign in ["https://evil.example", "null", "http://auth.example.com"] {
            let parts = parts_with("POST", &[("origin", foreign)]);
            assert!(matches!(
                check_form_sign_in_origin(&parts, &public, &[]),
                Err(ApiError::CrossSiteRequest)
            ));
        }
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
                prop_assert!(!found.value.expose_secret().is_empty() || found.from_cookie || !found.is_api_token);
                if let Some(header) = authorization {
                    prop_assert_eq!(found.value.expose_secret(), header.split_once(' ').unwrap().1.trim());
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
