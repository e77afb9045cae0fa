//! Fuzzes body decoding: any Content-Type text and any bytes, then every typed getter.
#![no_main]

use latchkey::http::fields::{body_kind, decode_body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // The first line is the Content-Type, the rest the body.
    let split = input.iter().position(|byte| *byte == b'\n').unwrap_or(input.len());
    let content_type = String::from_utf8_lossy(&input[..split]);
    let body = input.get(split + 1..).unwrap_or(&[]);
    let kind = if content_type.is_empty() { None } else { body_kind(&content_type).ok() };
    if let Ok(fields) = decode_body(kind, body) {
        for name in ["email", "password", "ret-url", "logout-all", "ttl", "permissions", "claims"] {
            let _ = fields.string(name);
            let _ = fields.boolean(name);
            let _ = fields.unsigned(name);
            let _ = fields.string_list(name);
            let _ = fields.object(name);
        }
    }
});
