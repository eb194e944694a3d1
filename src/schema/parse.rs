//! Validation of merged request parameters against an [`ObjectSchema`], with the checks, their
//! order and the texts of pve-common's `JSONSchema.pm` (`check_object`, `check_prop`,
//! `check_type`): spec/pve-api.md §1.4.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{ObjectSchema, Property, Schema, StringSchema};

/// A parameter as it arrived: a form/query value, a repeated form key, or a JSON body value.
#[derive(Clone, Debug, PartialEq)]
pub enum RawValue {
    Str(String),
    List(Vec<String>),
    Json(Value),
}

pub type RawParams = BTreeMap<String, RawValue>;

/// Parameter name → error text; several errors of one key are joined with a literal `\n`, as
/// PVE's `add_error` does.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ParamErrors(pub BTreeMap<String, String>);

impl ParamErrors {
    pub fn add(&mut self, key: &str, msg: impl Into<String>) {
        let msg = msg.into();
        self.0
            .entry(key.to_string())
            .and_modify(|e| {
                e.push_str("\\n");
                e.push_str(&msg);
            })
            .or_insert(msg);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Checks `params` against `schema` and returns them typed (booleans and integers as JSON
/// values), with schema defaults filled in for absent optional parameters.
pub fn validate(
    schema: &ObjectSchema,
    params: &RawParams,
) -> Result<Map<String, Value>, ParamErrors> {
    let mut errors = ParamErrors::default();
    let mut out = Map::new();

    for prop in schema.properties {
        match params.get(prop.name) {
            None if !prop.optional => {
                errors.add(prop.name, "property is missing and it is not optional")
            }
            None => {}
            Some(raw) => {
                if let Some(v) = check_prop(prop, raw, &mut errors) {
                    out.insert(prop.name.to_string(), v);
                }
            }
        }
    }

    for key in params.keys() {
        match schema.property(key) {
            Some(prop) => {
                if let Some(req) = prop.requires
                    && !params.contains_key(req)
                {
                    errors.add(req, format!("missing property required by '{key}'"));
                }
            }
            None if !schema.additional_properties => errors.add(
                key,
                "property is not defined in schema and the schema does not allow additional properties",
            ),
            None => {
                if let Some(RawValue::Str(s)) = params.get(key) {
                    out.insert(key.clone(), Value::String(s.clone()));
                }
            }
        }
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    for prop in schema.properties {
        if !out.contains_key(prop.name)
            && let Some(d) = default_value(prop.schema)
        {
            out.insert(prop.name.to_string(), d);
        }
    }
    Ok(out)
}

fn default_value(schema: &Schema) -> Option<Value> {
    match schema {
        Schema::Boolean { default } => default.map(Value::Bool),
        Schema::Integer { default, .. } => default.map(Value::from),
        Schema::String(s) => s.default.map(Value::from),
    }
}

/// Perl sees a repeated form key as an array ref and a JSON boolean as a blessed ref; the type
/// check reports them by those names.
fn scalar_text(raw: &RawValue) -> Result<String, &'static str> {
    match raw {
        RawValue::Str(s) => Ok(s.clone()),
        RawValue::List(_) => Err("ARRAY"),
        RawValue::Json(Value::String(s)) => Ok(s.clone()),
        RawValue::Json(Value::Number(n)) => Ok(n.to_string()),
        RawValue::Json(Value::Bool(b)) => Ok(if *b { "1" } else { "0" }.to_string()),
        RawValue::Json(Value::Array(_)) => Err("ARRAY"),
        RawValue::Json(Value::Object(_)) => Err("HASH"),
        RawValue::Json(Value::Null) => Ok(String::new()),
    }
}

fn check_prop(prop: &Property, raw: &RawValue, errors: &mut ParamErrors) -> Option<Value> {
    let type_name = prop.schema.type_name();
    if matches!(raw, RawValue::Json(Value::Bool(_))) && type_name != "boolean" {
        errors.add(
            prop.name,
            format!("type check ('{type_name}') failed - got JSON::PP::Boolean"),
        );
        return None;
    }
    let checked = scalar_text(raw)
        .map_err(|kind| format!("type check ('{type_name}') failed - got {kind}"))
        .and_then(|text| check_value(prop.schema, text));
    match checked {
        Ok(v) => Some(v),
        Err(e) => {
            errors.add(prop.name, e);
            None
        }
    }
}

/// check_prop for one scalar value: its type (booleans as `0`/`1`, integers as `^[+-]?\d+$`),
/// bounds, then for strings length, pattern, format and enumeration; the first failing check
/// is the only one reported. The same engine checks storage.cfg values, so a value is valid in
/// the API exactly when it is valid in a config file.
pub fn check_value(schema: &Schema, text: String) -> Result<Value, String> {
    let type_error = || {
        Err(format!(
            "type check ('{}') failed - got '{text}'",
            schema.type_name()
        ))
    };
    match schema {
        Schema::Boolean { .. } => match text.as_str() {
            "1" => Ok(Value::Bool(true)),
            "0" => Ok(Value::Bool(false)),
            _ => type_error(),
        },
        Schema::Integer {
            minimum, maximum, ..
        } => {
            let Some(n) = parse_integer(&text) else {
                return type_error();
            };
            if let Some(min) = minimum
                && n < *min
            {
                return Err(format!("value must have a minimum value of {min}"));
            }
            if let Some(max) = maximum
                && n > *max
            {
                return Err(format!("value must have a maximum value of {max}"));
            }
            Ok(Value::from(n))
        }
        Schema::String(s) => check_string(s, &text).map(|()| Value::String(text)),
    }
}

/// JSONSchema's `is_integer`: `^[+-]?\d+$`; beyond `i64` it is no integer here.
fn parse_integer(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn check_string(s: &StringSchema, text: &str) -> Result<(), String> {
    let len = text.chars().count();
    if let Some(min) = s.min_length
        && len < min
    {
        return Err(format!("value must be at least {min} characters long"));
    }
    if let Some(max) = s.max_length
        && len > max
    {
        return Err(format!("value may only be {max} characters long"));
    }
    if let Some(p) = s.pattern
        && !p.is_match(text)
    {
        return Err("value does not match the regex pattern".into());
    }
    if let Some(f) = s.format
        && let Err(e) = (f.verify)(text)
    {
        return Err(format!("invalid format - {e}"));
    }
    if let Some(values) = s.enumeration
        && !values.contains(&text)
    {
        return Err(format!(
            "value '{text}' does not have a value in the enumeration '{}'",
            values.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Format, Pattern, Shape};

    static URL_RE: Pattern = Pattern::new("^https?://.*$");
    static BOOL: Schema = Schema::Boolean {
        default: Some(true),
    };
    static INT: Schema = Schema::Integer {
        minimum: Some(0),
        maximum: Some(10),
        default: None,
    };
    static URL: Schema = Schema::String(StringSchema {
        pattern: Some(&URL_RE),
        ..StringSchema::new()
    });
    static NAME: Schema = Schema::String(StringSchema {
        max_length: Some(5),
        ..StringSchema::new()
    });
    static COLOR_FMT: Format = Format {
        name: "color",
        verify: |v| match v {
            "red" | "blue" | "green" => Ok(()),
            _ => Err(format!("invalid color '{v}'\n")),
        },
        shape: Shape::Enum(&["red", "blue", "green"]),
    };
    static COLOR: Schema = Schema::String(StringSchema {
        format: Some(&COLOR_FMT),
        enumeration: Some(&["red", "blue"]),
        ..StringSchema::new()
    });
    static PROPS: [Property; 6] = [
        Property {
            name: "url",
            description: "",
            optional: false,
            schema: &URL,
            requires: None,
        },
        Property {
            name: "name",
            description: "",
            optional: true,
            schema: &NAME,
            requires: Some("url"),
        },
        Property {
            name: "flag",
            description: "",
            optional: true,
            schema: &BOOL,
            requires: None,
        },
        Property {
            name: "n",
            description: "",
            optional: true,
            schema: &INT,
            requires: None,
        },
        Property {
            name: "color",
            description: "",
            optional: true,
            schema: &COLOR,
            requires: None,
        },
        Property {
            name: "sum",
            description: "",
            optional: true,
            schema: &NAME,
            requires: Some("algo"),
        },
    ];
    static OBJ: ObjectSchema = ObjectSchema {
        properties: &PROPS,
        additional_properties: false,
    };

    fn params(kv: &[(&str, &str)]) -> RawParams {
        kv.iter()
            .map(|(k, v)| (k.to_string(), RawValue::Str(v.to_string())))
            .collect()
    }

    fn errors_of(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        validate(&OBJ, &params(kv)).expect_err("should fail").0
    }

    #[test]
    fn typed_output_with_defaults() {
        let out = validate(&OBJ, &params(&[("url", "http://x"), ("n", "7")])).expect("valid");
        assert_eq!(out["url"], "http://x");
        assert_eq!(out["n"], 7);
        assert_eq!(out["flag"], true);
    }

    #[test]
    fn pve_texts() {
        assert_eq!(
            errors_of(&[])["url"],
            "property is missing and it is not optional"
        );
        assert_eq!(
            errors_of(&[("url", "ftp://x")])["url"],
            "value does not match the regex pattern"
        );
        assert_eq!(
            errors_of(&[("url", "http://x"), ("name", "toolong")])["name"],
            "value may only be 5 characters long"
        );
        assert_eq!(
            errors_of(&[("url", "http://x"), ("flag", "true")])["flag"],
            "type check ('boolean') failed - got 'true'"
        );
        assert_eq!(
            errors_of(&[("url", "http://x"), ("n", "11")])["n"],
            "value must have a maximum value of 10"
        );
        assert_eq!(
            errors_of(&[("url", "http://x"), ("foo", "1")])["foo"],
            "property is not defined in schema and the schema does not allow additional properties"
        );
        assert_eq!(
            errors_of(&[("url", "http://x"), ("sum", "1")])["algo"],
            "missing property required by 'sum'"
        );
    }

    #[test]
    fn format_is_checked_before_enum() {
        assert_eq!(
            errors_of(&[("url", "http://x"), ("color", "pink")])["color"],
            "invalid format - invalid color 'pink'\n"
        );
        assert_eq!(
            errors_of(&[("url", "http://x"), ("color", "green")])["color"],
            "value 'green' does not have a value in the enumeration 'red, blue'"
        );
    }

    #[test]
    fn repeated_key_is_an_array() {
        let mut p = params(&[]);
        p.insert(
            "url".into(),
            RawValue::List(vec!["http://a".into(), "http://b".into()]),
        );
        let errs = validate(&OBJ, &p).expect_err("array").0;
        assert_eq!(errs["url"], "type check ('string') failed - got ARRAY");
    }

    #[test]
    fn json_values() {
        let mut p = params(&[("url", "http://x")]);
        p.insert("flag".into(), RawValue::Json(Value::Bool(false)));
        p.insert("n".into(), RawValue::Json(Value::from(3)));
        let out = validate(&OBJ, &p).expect("valid");
        assert_eq!(out["flag"], false);
        assert_eq!(out["n"], 3);
    }

    #[test]
    fn errors_of_one_key_join_with_literal_backslash_n() {
        let mut e = ParamErrors::default();
        e.add("k", "a");
        e.add("k", "b");
        assert_eq!(e.0["k"], "a\\nb");
    }
}
