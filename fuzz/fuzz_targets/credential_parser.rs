//! Fuzzes credential reading: any Authorization, Cookie, Origin and query text, through the
//! one function that picks the request's credential, and the cookie CSRF rule.
#![no_main]

use latchkey::http::credential::{check_cookie_origin, find_credential};
use latchkey::http::fields::Fields;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    let mut pieces = text.splitn(4, '\n');
    let authorization = pieces.next().unwrap_or("");
    let cookie = pieces.next().unwrap_or("");
    let origin = pieces.next().unwrap_or("");
    let query = pieces.next().unwrap_or("");
    let mut builder = hyper::Request::builder().method("POST").uri("/frontend/api/v1/user/current");
    for (name, value) in [("authorization", authorization), ("cookie", cookie), ("origin", origin)] {
        if !value.is_empty() && hyper::header::HeaderValue::from_str(value).is_ok() {
            builder = builder.header(name, value);
        }
    }
    let Ok(request) = builder.body(()) else {
        return;
    };
    let (parts, ()) = request.into_parts();
    let query = Fields::from_query(Some(query));
    let _ = find_credential(&parts, &query, true);
    let public: latchkey::model::net::Origin = "https://auth.example.com".parse().unwrap();
    let _ = check_cookie_origin(&parts, &public, &[]);
});
