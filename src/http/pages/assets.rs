//! The pages' assets: the built-in stylesheet, icon and passkey script, compiled into the
//! binary, and the operator's `[pages] stylesheet`, read once at start. A stylesheet or
//! script is linked with a hash of its bytes in the query, so browsers may keep it for a
//! year: new bytes are a new URL.

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
/// The passkey ceremonies (API.md section 10), linked only by the pages that offer them.
pub const PASSKEY_SCRIPT_PATH: &str = "/assets/passkey.js";

const BUILT_IN_STYLESHEET: &str = include_str!("assets/latchkey.css");
const ICON: &str = include_str!("assets/icon.svg");
const PASSKEY_SCRIPT: &str = include_str!("assets/passkey.js");

const CSS_CONTENT_TYPE: &str = "text/css; charset=utf-8";
const SCRIPT_CONTENT_TYPE: &str = "text/javascript; charset=utf-8";

/// One asset linked with a hash of its bytes in the URL: its bytes and that URL.
#[derive(Debug)]
pub struct VersionedAsset {
    bytes: Bytes,
    pub url: String,
}

impl VersionedAsset {
    fn new(path: &str, bytes: Bytes) -> VersionedAsset {
        let digest = Sha256::digest(&bytes);
        let version = &base16ct::lower::encode_string(&digest)[..16];
        VersionedAsset {
            url: format!("{path}?v={version}"),
            bytes,
        }
    }

    /// The built-in passkey script.
    pub fn passkey_script() -> VersionedAsset {
        VersionedAsset::new(
            PASSKEY_SCRIPT_PATH,
            Bytes::from_static(PASSKEY_SCRIPT.as_bytes()),
        )
    }
}

/// The built-in stylesheet, and the operator's when one is configured.
#[derive(Debug)]
pub struct Stylesheets {
    pub built_in: VersionedAsset,
    pub operator: Option<VersionedAsset>,
}

impl Stylesheets {
    /// The operator's file's bytes were read by the caller (`app::preflight` checked it).
    pub fn new(operator: Option<Vec<u8>>) -> Stylesheets {
        Stylesheets {
            built_in: VersionedAsset::new(
                BUILT_IN_STYLESHEET_PATH,
                Bytes::from_static(BUILT_IN_STYLESHEET.as_bytes()),
            ),
            operator: operator
                .map(|bytes| VersionedAsset::new(OPERATOR_STYLESHEET_PATH, Bytes::from(bytes))),
        }
    }
}

/// A versioned asset's answer: a year in every cache, since new bytes are a new URL.
fn versioned_response(asset: &VersionedAsset, content_type: &'static str) -> Response {
    let mut response = empty_response(StatusCode::OK);
    *response.body_mut() = Full::new(asset.bytes.clone());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}

fn css_response(stylesheet: &VersionedAsset) -> Response {
    versioned_response(stylesheet, CSS_CONTENT_TYPE)
}

/// `GET /assets/latchkey.css`.
pub fn built_in(stylesheets: &Stylesheets) -> Response {
    css_response(&stylesheets.built_in)
}

/// `GET /assets/passkey.js`.
pub fn passkey_script(script: &VersionedAsset) -> Response {
    versioned_response(script, SCRIPT_CONTENT_TYPE)
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
