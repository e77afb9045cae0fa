//! The pages' assets: the built-in stylesheet and icon, compiled into the binary, and the
//! operator's `[pages] stylesheet`, read once at start. A stylesheet is linked with a hash of
//! its bytes in the query, so browsers may keep it for a year: new bytes are a new URL.

use bytes::Bytes;
use http_body_util::Full;
use hyper::StatusCode;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use sha2::{Digest, Sha256};

use crate::http::error::ApiError;
use crate::http::response::{Response, empty_response};

pub const BUILT_IN_STYLESHEET_PATH: &str = "/assets/latchkey.css";
pub const OPERATOR_STYLESHEET_PATH: &str = "/assets/site.css";
/// The pages link their icon, so that browsers do not ask for `/favicon.ico` (a 404 that
/// Chromium logs as a console error on every page).
pub const ICON_PATH: &str = "/assets/icon.svg";

const BUILT_IN_STYLESHEET: &str = include_str!("assets/latchkey.css");
const ICON: &str = include_str!("assets/icon.svg");

/// One stylesheet: its bytes and the URL pages link it by.
#[derive(Debug)]
pub struct Stylesheet {
    bytes: Bytes,
    pub url: String,
}

impl Stylesheet {
    fn new(path: &str, bytes: Bytes) -> Stylesheet {
        let digest = Sha256::digest(&bytes);
        let version = &base16ct::lower::encode_string(&digest)[..16];
        Stylesheet {
            url: format!("{path}?v={version}"),
            bytes,
        }
    }
}

/// The built-in stylesheet, and the operator's when one is configured.
#[derive(Debug)]
pub struct Stylesheets {
    pub built_in: Stylesheet,
    pub operator: Option<Stylesheet>,
}

impl Stylesheets {
    /// The operator's file's bytes were read by the caller (`app::preflight` checked it).
    pub fn new(operator: Option<Vec<u8>>) -> Stylesheets {
        Stylesheets {
            built_in: Stylesheet::new(
                BUILT_IN_STYLESHEET_PATH,
                Bytes::from_static(BUILT_IN_STYLESHEET.as_bytes()),
            ),
            operator: operator
                .map(|bytes| Stylesheet::new(OPERATOR_STYLESHEET_PATH, Bytes::from(bytes))),
        }
    }
}

fn css_response(stylesheet: &Stylesheet) -> Response {
    let mut response = empty_response(StatusCode::OK);
    *response.body_mut() = Full::new(stylesheet.bytes.clone());
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}

/// `GET /assets/latchkey.css`.
pub fn built_in(stylesheets: &Stylesheets) -> Response {
    css_response(&stylesheets.built_in)
}

/// `GET /assets/icon.svg`: kept a day, since its URL carries no version.
pub fn icon() -> Response {
    let mut response = empty_response(StatusCode::OK);
    *response.body_mut() = Full::new(Bytes::from_static(ICON.as_bytes()));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("image/svg+xml"));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    response
}

/// `GET /assets/site.css`: 404 when no stylesheet is configured.
pub fn operator(stylesheets: &Stylesheets) -> Result<Response, ApiError> {
    stylesheets
        .operator
        .as_ref()
        .map(css_response)
        .ok_or(ApiError::NotFound)
}
