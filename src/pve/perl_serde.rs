//! Reading values a Perl API sends: PVE's JSON encoder writes numbers and booleans as strings
//! whenever Perl last used them as strings, so a client reads `"5"` as 5 and `"1"`, `1` or
//! `true` as true (as proxmox-rs's `proxmox-serde` perl module does). The daemon itself always
//! sends numbers, and booleans as 0/1, as PVE's API does.

use serde::de::Error;
use serde::{Deserialize, Deserializer, Serializer};
use serde_json::Value;

/// A non-negative number, or a string holding one; null is 0.
pub fn number<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().map(|f| f as u64))
            .ok_or_else(|| D::Error::custom(format!("not a size: {n}"))),
        Value::String(s) => s
            .parse()
            .map_err(|_| D::Error::custom(format!("not a number: '{s}'"))),
        Value::Null => Ok(0),
        other => Err(D::Error::custom(format!("not a number: {other}"))),
    }
}

/// 0/1, "0"/"1" or a JSON boolean; null is false.
pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Value::deserialize(d)? {
        Value::Bool(b) => Ok(b),
        Value::Number(n) => Ok(n.as_f64().is_some_and(|f| f != 0.0)),
        Value::String(s) => Ok(!matches!(s.as_str(), "" | "0")),
        Value::Null => Ok(false),
        other => Err(D::Error::custom(format!("not a boolean: {other}"))),
    }
}

/// A boolean as PVE's API writes one: 0 or 1.
pub fn int_flag<S: Serializer>(b: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u8(u8::from(*b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, serde::Serialize, Debug, PartialEq)]
    struct T {
        #[serde(deserialize_with = "number")]
        n: u64,
        #[serde(deserialize_with = "flag", serialize_with = "int_flag")]
        f: bool,
    }

    #[test]
    fn perl_values_read_leniently_and_write_as_pve() {
        for (json, n, f) in [
            (r#"{"n": 5, "f": 1}"#, 5, true),
            (r#"{"n": "5", "f": "0"}"#, 5, false),
            (r#"{"n": null, "f": true}"#, 0, true),
        ] {
            assert_eq!(serde_json::from_str::<T>(json).expect(json), T { n, f });
        }
        assert!(serde_json::from_str::<T>(r#"{"n": "x", "f": 1}"#).is_err());
        assert_eq!(
            serde_json::to_string(&T { n: 1, f: true }).expect("json"),
            r#"{"n":1,"f":1}"#
        );
    }
}
