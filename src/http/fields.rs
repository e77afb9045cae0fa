//! Request fields from a JSON object, a urlencoded form or a query string, read through one
//! set of typed getters that name the field in every error. Bodies are read with a size
//! limit and decoded by the rules of API.md section 2.

use std::borrow::Cow;
use std::cell::RefCell;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::http::request::Parts;
use serde::Deserializer;
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::http::error::ApiError;
use crate::model::{Permission, PermissionSet, Secret};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Form,
}

/// Decoded fields. Unknown fields are ignored by simply never being asked for. A body carries
/// passwords and tokens, so its fields are a `Secret` until a getter reads one.
#[derive(Debug)]
pub enum Fields {
    Json(Secret<Map<String, Value>>),
    /// Pairs in order; `key[]` is stored as `key`.
    Form(Secret<Vec<(String, String)>>),
}

impl Fields {
    pub fn empty() -> Fields {
        Fields::Json(Secret::new(Map::new()))
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
        Fields::Form(Secret::new(decode_form_lossily(
            query.unwrap_or("").as_bytes(),
        )))
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
            Fields::Json(object) => match object.expose_secret().get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) => Ok(Some(text.clone())),
                Some(_) => Err(ApiError::invalid_field(name, "must be a string")),
            },
            Fields::Form(pairs) => {
                Ok(Fields::single_form_value(pairs.expose_secret(), name)?.map(str::to_owned))
            }
        }
    }

    pub fn required_string(&self, name: &'static str) -> Result<String, ApiError> {
        self.string(name)?
            .ok_or_else(|| ApiError::invalid_field(name, "is required"))
    }

    pub fn boolean(&self, name: &'static str) -> Result<Option<bool>, ApiError> {
        let must_be_boolean = || ApiError::invalid_field(name, "must be true or false");
        match self {
            Fields::Json(object) => match object.expose_secret().get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Bool(value)) => Ok(Some(*value)),
                Some(_) => Err(must_be_boolean()),
            },
            Fields::Form(pairs) => match Fields::single_form_value(pairs.expose_secret(), name)? {
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
            Fields::Json(object) => match object.expose_secret().get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(number)) => {
                    number.as_u64().map(Some).ok_or_else(must_be_unsigned)
                }
                Some(_) => Err(must_be_unsigned()),
            },
            Fields::Form(pairs) => match Fields::single_form_value(pairs.expose_secret(), name)? {
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
            Fields::Json(object) => match object.expose_secret().get(name) {
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
                let values: Vec<String> = Fields::form_values(pairs.expose_secret(), name)
                    .map(str::to_owned)
                    .collect();
                Ok((!values.is_empty()).then_some(values))
            }
        }
    }

    /// A list of permission names (`string_list`); an unknown name is a 400 naming the
    /// field.
    pub fn permission_set(&self, name: &'static str) -> Result<Option<PermissionSet>, ApiError> {
        let Some(names) = self.string_list(name)? else {
            return Ok(None);
        };
        names
            .iter()
            .map(|text| {
                Permission::from_name(text)
                    .ok_or_else(|| ApiError::invalid_field(name, "names an unknown permission"))
            })
            .collect::<Result<PermissionSet, _>>()
            .map(Some)
    }

    /// A JSON object field (for claims); forms cannot carry one.
    pub fn object(&self, name: &'static str) -> Result<Option<Map<String, Value>>, ApiError> {
        match self {
            Fields::Json(object) => match object.expose_secret().get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Object(inner)) => Ok(Some(inner.clone())),
                Some(_) => Err(ApiError::invalid_field(name, "must be an object")),
            },
            Fields::Form(pairs) => {
                if Fields::form_values(pairs.expose_secret(), name)
                    .next()
                    .is_some()
                {
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
            match parse_json_without_duplicate_keys(bytes) {
                Ok(Value::Object(object)) => Ok(Fields::Json(Secret::new(object))),
                Ok(_) => Err(ApiError::MalformedBody("the JSON body must be an object")),
                Err(JsonProblem::DuplicateKey(path)) => Err(ApiError::InvalidField {
                    field: Cow::Owned(path),
                    message: Cow::Borrowed("is given more than once"),
                }),
                Err(JsonProblem::Syntax) => {
                    Err(ApiError::MalformedBody("the body is not valid JSON"))
                }
            }
        }
        Some(BodyKind::Form) => {
            if std::str::from_utf8(bytes).is_err() {
                return Err(ApiError::MalformedBody("the form is not valid UTF-8"));
            }
            Ok(Fields::Form(Secret::new(decode_form_strictly(bytes)?)))
        }
    }
}

/// Why a JSON body was refused.
#[derive(Debug, PartialEq, Eq)]
enum JsonProblem {
    Syntax,
    /// An object repeats a key; the path to it, as `claims.role` or `items[2].name`.
    DuplicateKey(String),
}

/// Parses JSON like `serde_json::from_slice::<Value>`, except that an object that repeats a
/// key, at any depth, is refused (API.md section 15, rule 17): serde_json would silently keep
/// the last one, so two readers of the same body could disagree on what it says.
fn parse_json_without_duplicate_keys(bytes: &[u8]) -> Result<Value, JsonProblem> {
    let duplicate_path = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = DuplicateRefusingValue {
        duplicate_path: &duplicate_path,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    match (parsed, duplicate_path.into_inner()) {
        (_, Some(mut reversed_path)) => {
            reversed_path.reverse();
            Err(JsonProblem::DuplicateKey(join_path(&reversed_path)))
        }
        (Ok(value), None) => Ok(value),
        (Err(_), None) => Err(JsonProblem::Syntax),
    }
}

/// One segment per level: an object key, or `[index]` for an array element.
fn join_path(segments: &[String]) -> String {
    let mut joined = String::new();
    for segment in segments {
        if !joined.is_empty() && !segment.starts_with('[') {
            joined.push('.');
        }
        joined.push_str(segment);
    }
    joined
}

/// A `serde_json::Value` seed that fails on a repeated key. On that failure it records the
/// key, and each enclosing level adds its own key (or index) on the way out, innermost
/// first; nothing is allocated for the path while the body is sound.
struct DuplicateRefusingValue<'a> {
    duplicate_path: &'a RefCell<Option<Vec<String>>>,
}

impl DuplicateRefusingValue<'_> {
    fn note_enclosing_segment(&self, segment: impl FnOnce() -> String) {
        if let Some(path) = self.duplicate_path.borrow_mut().as_mut() {
            path.push(segment());
        }
    }
}

impl<'de> DeserializeSeed<'de> for DuplicateRefusingValue<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DuplicateRefusingValue<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let element = sequence.next_element_seed(DuplicateRefusingValue {
                duplicate_path: self.duplicate_path,
            });
            match element {
                Ok(Some(item)) => items.push(item),
                Ok(None) => return Ok(Value::Array(items)),
                Err(error) => {
                    let index = items.len();
                    self.note_enclosing_segment(|| format!("[{index}]"));
                    return Err(error);
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = entries.next_key::<String>()? {
            let value = entries.next_value_seed(DuplicateRefusingValue {
                duplicate_path: self.duplicate_path,
            });
            let value = match value {
                Ok(value) => value,
                Err(error) => {
                    self.note_enclosing_segment(|| key);
                    return Err(error);
                }
            };
            if object.contains_key(&key) {
                *self.duplicate_path.borrow_mut() = Some(vec![key]);
                return Err(serde::de::Error::custom("duplicate key"));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
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

    fn duplicate_named(body: &[u8]) -> Option<String> {
        match decode_body(Some(BodyKind::Json), body) {
            Err(ApiError::InvalidField { field, .. }) => Some(field.into_owned()),
            _ => None,
        }
    }

    #[test]
    fn a_repeated_json_key_is_refused_at_any_depth_and_named() {
        assert_eq!(
            duplicate_named(br#"{"email":"a@example.com","email":"b@example.com"}"#).as_deref(),
            Some("email")
        );
        assert_eq!(
            duplicate_named(br#"{"claims":{"role":"user","x":[1,{"a":1}],"role":"admin"}}"#)
                .as_deref(),
            Some("claims.role")
        );
        assert_eq!(
            duplicate_named(br#"{"l":[{"a":1},{"b":{"c":1,"c":2}}]}"#).as_deref(),
            Some("l[1].b.c")
        );
        // The same key in sibling objects is no repetition; nor is a differently escaped key
        // that decodes to another string.
        let fields = decode_body(
            Some(BodyKind::Json),
            br#"{"a":{"k":1},"b":{"k":2},"c":[{"k":1},{"k":2}],"k":0,"K":1}"#,
        )
        .unwrap();
        assert!(fields.object("a").unwrap().is_some());
        // An escaped spelling of the same key is the same key.
        assert_eq!(
            duplicate_named(br#"{"email":"a@example.com","\u0065mail":"b@example.com"}"#)
                .as_deref(),
            Some("email")
        );
        // serde_json's depth limit still holds: deep nesting is refused, not a stack overflow.
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(
            decode_body(Some(BodyKind::Json), deep.as_bytes()),
            Err(ApiError::MalformedBody(_))
        ));
        // Syntax errors stay syntax errors, also after a sound duplicate-free prefix.
        for broken in [&br#"{"a":1,"#[..], br#"{"a":1}x"#, br#"{"a":[1,}"#] {
            assert!(
                matches!(
                    decode_body(Some(BodyKind::Json), broken),
                    Err(ApiError::MalformedBody(_))
                ),
                "{broken:?}"
            );
        }
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

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|number| Value::Number(number.into())),
            any::<u64>().prop_map(|number| Value::Number(number.into())),
            (-1.0e6f64..1.0e6).prop_map(|number| serde_json::json!(number)),
            "\\PC{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z]{1,4}", inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn duplicate_free_json_reads_exactly_as_serde_json_reads_it(value in json_value()) {
            let bytes = serde_json::to_vec(&value).unwrap();
            let as_serde_json_reads_it: Value = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(parse_json_without_duplicate_keys(&bytes), Ok(as_serde_json_reads_it));
        }

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
