//! The parameter-schema engine: one declaration per parameter that both validates requests and is
//! exported to `api-schema/`. It mirrors what pve-common's `PVE::JSONSchema` checks and the texts it
//! reports (spec/pve-api.md §1.4), and knows nothing about HTTP or PVE endpoints.

pub mod export;
mod parse;

pub use parse::{ParamErrors, RawParams, RawValue, check_value, validate};

use std::sync::OnceLock;

use regex::Regex;

/// A regular expression kept with its source text, compiled on first use. The source is what
/// the exported schema shows.
pub struct Pattern {
    pub source: &'static str,
    compiled: OnceLock<Option<Regex>>,
}

impl Pattern {
    pub const fn new(source: &'static str) -> Self {
        Pattern {
            source,
            compiled: OnceLock::new(),
        }
    }

    fn regex(&self) -> Option<&Regex> {
        self.compiled
            .get_or_init(|| Regex::new(self.source).ok())
            .as_ref()
    }

    /// An invalid pattern matches nothing; each pattern's unit tests keep that from happening.
    pub fn is_match(&self, value: &str) -> bool {
        self.regex().is_some_and(|re| re.is_match(value))
    }

    /// The first capture group, if the pattern matches.
    pub fn capture<'t>(&self, text: &'t str) -> Option<&'t str> {
        Some(self.regex()?.captures(text)?.get(1)?.as_str())
    }

    pub fn compiles(&self) -> bool {
        Regex::new(self.source).is_ok()
    }
}

/// A named string format (`pve-node`, `pve-storage-id`, ...). `verify` returns PVE's error text,
/// which is reported as `invalid format - <text>`.
pub struct Format {
    pub name: &'static str,
    pub verify: fn(&str) -> Result<(), String>,
    /// What `verify` accepts, as an OpenAPI client can check it before sending, so that a
    /// schema-driven client's "valid" values are valid here too.
    pub shape: Shape,
}

/// A constraint as OpenAPI states it: a regex (ECMA-262 syntax) or a list of values.
#[derive(Clone, Copy)]
pub enum Shape {
    /// Nothing simpler than the check itself.
    Unstated,
    Pattern(&'static str),
    Enum(&'static [&'static str]),
}

pub enum Schema {
    Boolean {
        default: Option<bool>,
    },
    Integer {
        minimum: Option<i64>,
        maximum: Option<i64>,
        default: Option<i64>,
    },
    String(StringSchema),
}

pub struct StringSchema {
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    pub pattern: Option<&'static Pattern>,
    pub format: Option<&'static Format>,
    pub enumeration: Option<&'static [&'static str]>,
    pub default: Option<&'static str>,
    /// A grammar the handler enforces with a text of its own (PVE's `die` in the method
    /// rather than a schema check), exported for OpenAPI clients only.
    pub handler_checks: Shape,
}

impl Default for StringSchema {
    fn default() -> Self {
        StringSchema::new()
    }
}

impl StringSchema {
    pub const fn new() -> Self {
        StringSchema {
            min_length: None,
            max_length: None,
            pattern: None,
            format: None,
            enumeration: None,
            default: None,
            handler_checks: Shape::Unstated,
        }
    }

    /// A string of a named format.
    pub const fn format(format: &'static Format) -> Self {
        StringSchema {
            format: Some(format),
            ..StringSchema::new()
        }
    }
}

/// `PVE::JSONSchema::parse_boolean`: `1|on|yes|true` and `0|off|no|false`, any case.
pub fn parse_boolean(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "on" | "yes" | "true" => Some(true),
        "0" | "off" | "no" | "false" => Some(false),
        _ => None,
    }
}

impl Schema {
    /// An integer of at least `minimum`, with an optional default.
    pub const fn integer(minimum: Option<i64>, default: Option<i64>) -> Schema {
        Schema::Integer {
            minimum,
            maximum: None,
            default,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Schema::Boolean { .. } => "boolean",
            Schema::Integer { .. } => "integer",
            Schema::String(_) => "string",
        }
    }
}

pub struct Property {
    pub name: &'static str,
    pub description: &'static str,
    pub optional: bool,
    pub schema: &'static Schema,
    /// PVE's `requires`: this property may only be given together with the named one.
    pub requires: Option<&'static str>,
}

pub struct ObjectSchema {
    pub properties: &'static [Property],
    pub additional_properties: bool,
}

impl ObjectSchema {
    pub fn property(&self, name: &str) -> Option<&Property> {
        self.properties.iter().find(|p| p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_pattern_matches_nothing() {
        static BAD: Pattern = Pattern::new("(");
        assert!(!BAD.compiles());
        assert!(!BAD.is_match("("));
    }
}
