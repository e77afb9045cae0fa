//! Request fields from a JSON object, a urlencoded form or a query string, read through one
//! set of typed getters that name the field in every error. Bodies are read with a size
//! limit and decoded by the rules of API.md section 2.

use std::borrow::Cow;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::http::request::Parts;
use serde_json::{Map, Value};

use crate::http::error::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Form,
}

/// Decoded fields. Unknown fields are ignored by simply never being asked for.
#[derive(Debug)]
pub enum Fields {
    Json(Map<String, Value>),
    /// Pairs in order; `key[]` is stored as `key`.
    Form(Vec<(String, String)>),
}

impl Fields {
    pub fn empty() -> Fields {
        Fields::Json(Map::new())
    }

    pub fn kind(&self) -> BodyKind {
        match self {
            Fields::Json(_) => BodyKind::Json,
            Fields::Form(_) => BodyKind::Form,
        }
    }

    /// A query string, decoded like a form except that a value whose percent-decoding is
    /// not UTF-8 is read lossily (no query field is stored; a credential so mangled simply
    /// fails to verify).
    pub fn from_query(query: Option<&str>) -> Fields {
        Fields::Form(decode_form_lossily(query.unwrap_or("").as_bytes()))
    }

    fn form_values<'a>(
        pairs: &'a [(String, String)],
        name: &'a str,
    ) -> impl Iterator<Item = &'a str> {
        pairs
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn single_form_value<'a>(
        pairs: &'a [(String, String)],
        name: &'static str,
    ) -> Result<Option<&'a str>, ApiError> {
        let mut values = Fields::form_values(pairs, name);
        let first = values.next();
        if values.next().is_some() {
            return Err(ApiError::invalid_field(name, "is given more than once"));
        }
        Ok(first)
    }

    pub fn string(&self, name: &'static str) -> Result<Option<String>, ApiError> {
        match self {
            Fields::Json(object) => match object.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) => Ok(Some(text.clone())),
                Some(_) => Err(ApiError::invalid_field(name, "must be a string")),
            },
            Fields::Form(pairs) => Ok(Fields::single_form_value(pairs, name)?.map(str::to_owned)),
        }
    }

    pub fn required_string(&self, name: &'static str) -> Result<String, ApiError> {
        self.string(name)?
            .ok_or_else(|| ApiError::invalid_field(name, "is required"))
    }

    pub fn boolean(&self, name: &'static str) -> Result<Option<bool>, ApiError> {
        let must_be_boolean = || ApiError::invalid_field(name, "must be true or false");
        match self {
            Fields::Json(object) => match object.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Bool(value)) => Ok(Some(*value)),
                Some(_) => Err(must_be_boolean()),
            },
            Fields::Form(pairs) => match Fields::single_form_value(pairs, name)? {
                None => Ok(None),
                Some("true") => Ok(Some(true)),
                Some("false") => Ok(Some(false)),
                Some(_) => Err(must_be_boolean()),
            },
        }
    }

    pub fn unsigned(&self, name: &'static str) -> Result<Option<u64>, ApiError> {
        let must_be_unsigned = || ApiError::invalid_field(name, "must be a whole number ≥ 0");
        match self {
            Fields::Json(object) => match object.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(number)) => {
                    number.as_u64().map(Some).ok_or_else(must_be_unsigned)
                }
                Some(_) => Err(must_be_unsigned()),
            },
            Fields::Form(pairs) => match Fields::single_form_value(pairs, name)? {
                None => Ok(None),
                Some(text) => {
                    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
                        return Err(must_be_unsigned());
                    }
                    text.parse().map(Some).map_err(|_| must_be_unsigned())
                }
            },
        }
    }

    /// An array of strings (JSON) or a repeated key (form).
    pub fn string_list(&self, name: &'static str) -> Result<Option<Vec<String>>, ApiError> {
        match self {
            Fields::Json(object) => match object.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|item| match item {
                        Value::String(text) => Ok(text.clone()),
                        _ => Err(ApiError::invalid_field(name, "must be an array of strings")),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some),
                Some(_) => Err(ApiError::invalid_field(name, "must be an array of strings")),
            },
            Fields::Form(pairs) => {
                let values: Vec<String> = Fields::form_values(pairs, name)
                    .map(str::to_owned)
                    .collect();
                Ok((!values.is_empty()).then_some(values))
            }
        }
    }

    /// A JSON object field (for claims); forms cannot carry one.
    pub fn object(&self, name: &'static str) -> Result<Option<Map<String, Value>>, ApiError> {
        match self {
            Fields::Json(object) => match object.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Object(inner)) => Ok(Some(inner.clone())),
                Some(_) => Err(ApiError::invalid_field(name, "must be an object")),
            },
            Fields::Form(pairs) => {
                if Fields::form_values(pairs, name).next().is_some() {
                    return Err(ApiError::invalid_field(name, "must be an object"));
                }
                Ok(None)
            }
        }
    }
}

fn decode_form_lossily(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes)
        .map(|(key, value)| {
            let key = match key.strip_suffix("[]") {
                Some(stripped) => Cow::Owned(stripped.to_owned()),
                None => key,
            };
            (key.into_owned(), value.into_owned())
        })
        .collect()
}

/// A form body, decoded strictly: a key or value whose percent-decoding is not UTF-8 is
/// refused rather than patched with U+FFFD (API.md section 15, rule 16), so what is stored
/// is what was sent.
fn decode_form_strictly(bytes: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    let mut pairs = Vec::new();
    for pair in bytes.split(|byte| *byte == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = match pair.iter().position(|byte| *byte == b'=') {
            Some(equals) => (&pair[..equals], &pair[equals + 1..]),
            None => (pair, &[][..]),
        };
        let mut key = percent_decode_to_utf8(key)?;
        if key.ends_with("[]") {
            key.truncate(key.len() - 2);
        }
        pairs.push((key, percent_decode_to_utf8(value)?));
    }
    Ok(pairs)
}

/// `+` is a space and `%XY` a byte; a `%` not followed by two hex digits stays as it is,
/// as in the WHATWG urlencoded parser.
fn percent_decode_to_utf8(encoded: &[u8]) -> Result<String, ApiError> {
    let mut decoded = Vec::with_capacity(encoded.len());
    let mut index = 0;
    while let Some(&byte) = encoded.get(index) {
        let escaped = match (byte, encoded.get(index + 1), encoded.get(index + 2)) {
            (b'%', Some(&high), Some(&low)) => hex_value(high).zip(hex_value(low)),
            _ => None,
        };
        match (byte, escaped) {
            (_, Some((high, low))) => {
                decoded.push(high << 4 | low);
                index += 3;
            }
            (b'+', None) => {
                decoded.push(b' ');
                index += 1;
            }
            (other, None) => {
                decoded.push(other);
                index += 1;
            }
        }
    }
    String::from_utf8(decoded)
        .map_err(|_| ApiError::MalformedBody("the form's percent-decoding is not valid UTF-8"))
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

/// Reads the body up to `limit` bytes and decodes it by its Content-Type.
pub async fn read_fields(parts: &Parts, body: Incoming, limit: usize) -> Result<Fields, ApiError> {
    let declared_length = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .map(|value| value.to_str().map_err(|_| ApiError::UnsupportedMediaType))
        .transpose()?;
    let kind = content_type.map(body_kind).transpose()?;
    let bytes: Bytes = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|error| {
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ApiError::PayloadTooLarge
            } else {
                ApiError::MalformedBody("the body could not be read")
            }
        })?
        .to_bytes();
    decode_body(kind, &bytes)
}

/// Decodes a body whose media type has been read; exposed for the fuzz targets.
pub fn decode_body(kind: Option<BodyKind>, bytes: &[u8]) -> Result<Fields, ApiError> {
    match kind {
        None if bytes.is_empty() => Ok(Fields::empty()),
        None => Err(ApiError::UnsupportedMediaType),
        Some(BodyKind::Json) => {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(Fields::empty());
            }
            match serde_json::from_slice::<Value>(bytes) {
                Ok(Value::Object(object)) => Ok(Fields::Json(object)),
                Ok(_) => Err(ApiError::MalformedBody("the JSON body must be an object")),
                Err(_) => Err(ApiError::MalformedBody("the body is not valid JSON")),
            }
        }
        Some(BodyKind::Form) => {
            if std::str::from_utf8(bytes).is_err() {
                return Err(ApiError::MalformedBody("the form is not valid UTF-8"));
            }
            Ok(Fields::Form(decode_form_strictly(bytes)?))
        }
    }
}

/// Media types compare case-insensitively; parameters are ignored except a charset, which
/// must be utf-8.
pub fn body_kind(content_type: &str) -> Result<BodyKind, ApiError> {
    let mut pieces = content_type.split(';');
    let media_type = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
    for parameter in pieces {
        let Some((name, value)) = parameter.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("charset") {
            let value = value.trim().trim_matches('"');
            if !value.eq_ignore_ascii_case("utf-8") && !value.eq_ignore_ascii_case("utf8") {
                return Err(ApiError::UnsupportedMediaType);
            }
        }
    }
    match media_type.as_str() {
        "application/json" => Ok(BodyKind::Json),
        "application/x-www-form-urlencoded" => Ok(BodyKind::Form),
        _ => Err(ApiError::UnsupportedMediaType),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_form_fields_read_alike_and_name_the_field_on_error() {
        let json = decode_body(
            Some(BodyKind::Json),
            br#"{"a":"x","b":true,"n":5,"l":["p","q"]}"#,
        )
        .unwrap();
        let form = decode_body(Some(BodyKind::Form), b"a=x&b=true&n=5&l[]=p&l=q").unwrap();
        for fields in [json, form] {
            assert_eq!(fields.string("a").unwrap().as_deref(), Some("x"));
            assert_eq!(fields.boolean("b").unwrap(), Some(true));
            assert_eq!(fields.unsigned("n").unwrap(), Some(5));
            assert_eq!(
                fields.string_list("l").unwrap(),
                Some(vec!["p".into(), "q".into()])
            );
            assert_eq!(fields.string("missing").unwrap(), None);
        }
        let wrong = decode_body(Some(BodyKind::Json), br#"{"a":1,"b":"yes"}"#).unwrap();
        assert!(
            matches!(wrong.string("a"), Err(ApiError::InvalidField { field, .. }) if field == "a")
        );
        assert!(
            matches!(wrong.boolean("b"), Err(ApiError::InvalidField { field, .. }) if field == "b")
        );
        let form = decode_body(Some(BodyKind::Form), b"b=1&a=x&a=y").unwrap();
        assert!(form.boolean("b").is_err());
        assert!(form.string("a").is_err());
    }

    #[test]
    fn media_types_and_bodies_follow_the_rules() {
        assert_eq!(
            body_kind("Application/JSON; charset=UTF-8").unwrap(),
            BodyKind::Json
        );
        assert_eq!(
            body_kind("application/x-www-form-urlencoded").unwrap(),
            BodyKind::Form
        );
        assert!(body_kind("application/json; charset=latin1").is_err());
        assert!(body_kind("text/plain").is_err());
        assert!(decode_body(None, b"").is_ok());
        assert!(decode_body(None, b"{}").is_err());
        assert!(decode_body(Some(BodyKind::Json), b"[1]").is_err());
        assert!(decode_body(Some(BodyKind::Json), b"{").is_err());
        assert!(decode_body(Some(BodyKind::Form), b"a=\xff").is_err());
    }

    #[test]
    fn a_form_is_percent_decoded_strictly() {
        let form = decode_body(
            Some(BodyKind::Form),
            b"a=J%C3%B6rg+M&b=100%25&c=%zz%4&d&&l[]=x&e=a=b",
        )
        .unwrap();
        assert_eq!(form.string("a").unwrap().as_deref(), Some("Jörg M"));
        assert_eq!(form.string("b").unwrap().as_deref(), Some("100%"));
        assert_eq!(form.string("c").unwrap().as_deref(), Some("%zz%4"));
        assert_eq!(form.string("d").unwrap().as_deref(), Some(""));
        assert_eq!(form.string("e").unwrap().as_deref(), Some("a=b"));
        assert_eq!(form.string_list("l").unwrap(), Some(vec!["x".to_owned()]));
        for undecodable in [&b"a=%FF"[..], b"a=%C3", b"%FF=x", b"a=%ED%A0%80"] {
            assert!(
                matches!(
                    decode_body(Some(BodyKind::Form), undecodable),
                    Err(ApiError::MalformedBody(_))
                ),
                "{undecodable:?}"
            );
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(kind in 0u8..3, bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let kind = match kind {
                0 => None,
                1 => Some(BodyKind::Json),
                _ => Some(BodyKind::Form),
            };
            if let Ok(fields) = decode_body(kind, &bytes) {
                for name in ["email", "password", "logout-all", "ttl", "permissions", "claims"] {
                    let _ = fields.string(name);
                    let _ = fields.boolean(name);
                    let _ = fields.unsigned(name);
                    let _ = fields.string_list(name);
                    let _ = fields.object(name);
                }
            }
        }

        #[test]
        fn json_and_form_carry_the_same_strings(pairs in proptest::collection::btree_map("[a-z-]{1,12}", "\\PC{0,30}", 0..6)) {
            let json = serde_json::to_vec(&pairs).unwrap();
            let form = form_urlencoded::Serializer::new(String::new()).extend_pairs(&pairs).finish();
            let from_json = decode_body(Some(BodyKind::Json), &json).unwrap();
            let from_form = decode_body(Some(BodyKind::Form), form.as_bytes()).unwrap();
            for (name, value) in &pairs {
                let name: &'static str = Box::leak(name.clone().into_boxed_str());
                prop_assert_eq!(from_json.string(name).unwrap(), Some(value.clone()));
                prop_assert_eq!(from_form.string(name).unwrap(), Some(value.clone()));
            }
        }

        #[test]
        fn strict_form_decoding_agrees_with_form_urlencoded_whenever_it_succeeds(text in "[ -~]{0,80}") {
            if let Ok(strict) = decode_form_strictly(text.as_bytes()) {
                prop_assert_eq!(strict, decode_form_lossily(text.as_bytes()));
            }
        }

        #[test]
        fn media_type_parsing_never_panics(content_type in "\\PC{0,60}") {
            let _ = body_kind(&content_type);
        }
    }
}
