//! Checks answers against the vendor's own OpenAPI document (`docs/vendor`): the subset
//! of JSON Schema it uses (types, properties, required, enum, items, additionalProperties,
//! $ref, date-time and uuid formats).

use std::sync::OnceLock;

use serde_json::Value;

fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/vendor/probe-openapi-2025-06.json"
        );
        let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{path}: {error}"));
        serde_json::from_str(&text).unwrap()
    })
}

/// Panics with the path of the first violation of schema `name`.
pub fn assert_matches_schema(value: &Value, name: &str) {
    let schema = &document()["components"]["schemas"][name];
    assert!(schema.is_object(), "no schema {name}");
    if let Err(problem) = check(value, schema, name) {
        panic!("{problem}\nin {value}");
    }
}

fn resolve(schema: &Value) -> &Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            &document()["components"]["schemas"][name]
        }
        None => schema,
    }
}

fn type_matches(value: &Value, type_name: &str) -> bool {
    match type_name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => false,
    }
}

fn check(value: &Value, schema: &Value, path: &str) -> Result<(), String> {
    let schema = resolve(schema);
    if let Some(types) = schema.get("type") {
        let allowed: Vec<&str> = match types {
            Value::String(single) => vec![single.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !allowed
            .iter()
            .any(|type_name| type_matches(value, type_name))
        {
            return Err(format!("{path}: {value} is not of type {allowed:?}"));
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        return Err(format!("{path}: {value} is not one of {options:?}"));
    }
    if let (Some(format), Some(text)) =
        (schema.get("format").and_then(Value::as_str), value.as_str())
    {
        let valid = match format {
            "date-time" => latchkey::rfc3339::parse_rfc3339(text).is_some(),
            "uuid" => latchkey::model::SessionId::parse_canonical(text).is_some(),
            _ => true,
        };
        if !valid {
            return Err(format!("{path}: {text:?} is not a {format}"));
        }
    }
    if let Some(minimum) = schema.get("minimum").and_then(Value::as_i64)
        && value.as_i64().is_some_and(|number| number < minimum)
    {
        return Err(format!("{path}: {value} is below {minimum}"));
    }
    if let Value::Object(object) = value {
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = required.as_str().unwrap_or_default();
            if !object.contains_key(name) {
                return Err(format!("{path}: required {name} is missing"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (key, inner) in object {
            match properties.and_then(|properties| properties.get(key)) {
                Some(property) => check(inner, property, &format!("{path}.{key}"))?,
                None => match schema.get("additionalProperties") {
                    Some(additional) if additional.is_object() => {
                        check(inner, additional, &format!("{path}.{key}"))?;
                    }
                    _ if properties.is_some() => {
                        return Err(format!("{path}: {key} is not a documented field"));
                    }
                    _ => {}
                },
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (index, item) in items.iter().enumerate() {
            check(item, item_schema, &format!("{path}[{index}]"))?;
        }
    }
    Ok(())
}
