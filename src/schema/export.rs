//! JSON renderings of a [`Schema`], [`Property`] and [`ObjectSchema`]: PVE's apidata shape and
//! OpenAPI 3.0 schema objects. Knows nothing of endpoints; `api::export` walks those.

use serde_json::{Map, Value, json};

use super::{ObjectSchema, Property, Schema, Shape, StringSchema};

/// PVE's JSON dump writes Perl booleans as 0/1.
fn flag(b: bool) -> Value {
    Value::from(u8::from(b))
}

/// A schema in PVE's apidata shape: `type`, then the constraints that are set.
pub fn schema(schema: &Schema) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), json!(schema.type_name()));
    match schema {
        Schema::Boolean { default } => {
            if let Some(d) = default {
                m.insert("default".into(), flag(*d));
            }
        }
        Schema::Integer {
            minimum,
            maximum,
            default,
        } => {
            insert_opt(&mut m, "minimum", *minimum);
            insert_opt(&mut m, "maximum", *maximum);
            insert_opt(&mut m, "default", *default);
        }
        Schema::String(s) => string_constraints(&mut m, s),
    }
    m
}

fn insert_opt<T: Into<Value>>(m: &mut Map<String, Value>, key: &str, v: Option<T>) {
    if let Some(v) = v {
        m.insert(key.into(), v.into());
    }
}

fn string_constraints(m: &mut Map<String, Value>, s: &StringSchema) {
    insert_opt(m, "minLength", s.min_length);
    insert_opt(m, "maxLength", s.max_length);
    insert_opt(m, "pattern", s.pattern.map(|p| p.source));
    insert_opt(m, "format", s.format.map(|f| f.name));
    insert_opt(m, "enum", s.enumeration.map(|e| e.to_vec()));
    insert_opt(m, "default", s.default);
}

/// One parameter as PVE's apidata shows it: the schema plus `description`, `optional` (only
/// when set, as PVE omits it) and `requires`.
pub fn property(p: &Property) -> Value {
    let mut m = schema(p.schema);
    m.insert("description".into(), json!(p.description));
    if p.optional {
        m.insert("optional".into(), flag(true));
    }
    insert_opt(&mut m, "requires", p.requires);
    Value::Object(m)
}

/// A parameter object as PVE's apidata shows it.
pub fn object(o: &ObjectSchema) -> Value {
    let properties: Map<String, Value> = o
        .properties
        .iter()
        .map(|p| (p.name.to_string(), property(p)))
        .collect();
    json!({
        "type": "object",
        "additionalProperties": flag(o.additional_properties),
        "properties": properties,
    })
}

/// An OpenAPI 3.0 schema object for a parameter value as it travels in a query string or a
/// form body. PVE booleans are the integers 0 and 1 there (`true` is a type error), so they
/// are rendered as such and marked `x-pve-type: boolean`.
pub fn openapi_schema(s: &Schema) -> Map<String, Value> {
    let mut m = schema(s);
    match s {
        Schema::Boolean { .. } => {
            m.insert("type".into(), json!("integer"));
            m.insert("enum".into(), json!([0, 1]));
            m.insert("x-pve-type".into(), json!("boolean"));
        }
        Schema::Integer { .. } => {}
        Schema::String(st) => {
            for shape in [
                st.format.map_or(Shape::Unstated, |f| f.shape),
                st.handler_checks,
            ] {
                match shape {
                    Shape::Unstated => {}
                    Shape::Pattern(p) => {
                        m.entry("pattern").or_insert(json!(p));
                    }
                    Shape::Enum(values) => {
                        m.entry("enum").or_insert(json!(values));
                    }
                }
            }
        }
    }
    m
}

/// [`openapi_schema`] plus the property's description and `x-requires`.
pub fn openapi_property(p: &Property) -> Value {
    let mut m = openapi_schema(p.schema);
    m.insert("description".into(), json!(p.description));
    insert_opt(&mut m, "x-requires", p.requires);
    Value::Object(m)
}

/// An OpenAPI object schema over the given properties (a form body); `required` lists the
/// non-optional ones.
pub fn openapi_object<'a>(
    properties: impl IntoIterator<Item = &'a Property>,
    additional_properties: bool,
) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for p in properties {
        props.insert(p.name.to_string(), openapi_property(p));
        if !p.optional {
            required.push(p.name);
        }
    }
    let mut m = Map::new();
    m.insert("type".into(), json!("object"));
    m.insert("additionalProperties".into(), json!(additional_properties));
    m.insert("properties".into(), Value::Object(props));
    if !required.is_empty() {
        m.insert("required".into(), json!(required));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Format, Pattern, Shape};

    static RE: Pattern = Pattern::new("^a+$");
    static FMT: Format = Format {
        name: "fmt",
        verify: |_| Ok(()),
        shape: Shape::Unstated,
    };
    static S: Schema = Schema::String(StringSchema {
        min_length: Some(1),
        max_length: Some(9),
        pattern: Some(&RE),
        format: Some(&FMT),
        enumeration: Some(&["a", "aa"]),
        default: Some("a"),
        handler_checks: Shape::Unstated,
    });
    static B: Schema = Schema::Boolean {
        default: Some(true),
    };
    static PROPS: [Property; 2] = [
        Property {
            name: "s",
            description: "S.",
            optional: false,
            schema: &S,
            requires: None,
        },
        Property {
            name: "b",
            description: "B.",
            optional: true,
            schema: &B,
            requires: Some("s"),
        },
    ];
    static OBJ: ObjectSchema = ObjectSchema {
        properties: &PROPS,
        additional_properties: false,
    };

    #[test]
    fn apidata_shape() {
        assert_eq!(
            object(&OBJ),
            json!({
                "type": "object",
                "additionalProperties": 0,
                "properties": {
                    "s": {"type": "string", "description": "S.", "minLength": 1, "maxLength": 9,
                          "pattern": "^a+$", "format": "fmt", "enum": ["a", "aa"], "default": "a"},
                    "b": {"type": "boolean", "description": "B.", "optional": 1, "default": 1,
                          "requires": "s"},
                },
            })
        );
    }

    #[test]
    fn openapi_shape() {
        assert_eq!(
            openapi_object(&PROPS, false),
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["s"],
                "properties": {
                    "s": {"type": "string", "description": "S.", "minLength": 1, "maxLength": 9,
                          "pattern": "^a+$", "format": "fmt", "enum": ["a", "aa"], "default": "a"},
                    "b": {"type": "integer", "enum": [0, 1], "x-pve-type": "boolean",
                          "description": "B.", "default": 1, "x-requires": "s"},
                },
            })
        );
    }
}
