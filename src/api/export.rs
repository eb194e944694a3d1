//! Walks the route tree ([`super::ROUTER`]) into the machine-readable API description
//! (`api-schema/isolib-api.json`, PVE's apidata in spirit) and its OpenAPI 3.0.3 export
//! (`api-schema/openapi.json`). Pure: the `schema` subcommand writes the files.

use serde_json::{Map, Value, json};

use super::router::{Access, ApiMethod, Returns};
use crate::schema::Property;
use crate::schema::export as schema_export;

pub const API_FILE: &str = "isolib-api.json";
pub const OPENAPI_FILE: &str = "openapi.json";
/// Where the generated files are checked in, relative to the repository root.
pub const DEFAULT_DIR: &str = "api-schema";

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{method} {path}: path parameter '{name}' is not declared in its parameters")]
    PathParam {
        method: &'static str,
        path: &'static str,
        name: String,
    },
}

/// Both files, name and content, in the order [`API_FILE`], [`OPENAPI_FILE`].
pub fn files(routes: &[&ApiMethod]) -> Result<[(&'static str, String); 2], ExportError> {
    Ok([
        (API_FILE, render(api_description(routes)?)),
        (OPENAPI_FILE, render(openapi(routes)?)),
    ])
}

/// Pretty JSON with sorted keys and a trailing newline, so equal tables give equal bytes.
pub fn render(mut v: Value) -> String {
    v.sort_all_objects();
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

fn method_rank(m: &str) -> u8 {
    match m {
        "GET" => 0,
        "POST" => 1,
        "PUT" => 2,
        _ => 3,
    }
}

fn sorted<'a>(routes: &[&'a ApiMethod]) -> Vec<&'a ApiMethod> {
    let mut v = routes.to_vec();
    v.sort_by(|a, b| {
        (a.path, method_rank(a.method), a.method).cmp(&(b.path, method_rank(b.method), b.method))
    });
    v
}

/// The `{name}` placeholders of a path template, in order.
fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

fn check_path_params(m: &ApiMethod) -> Result<(), ExportError> {
    for name in path_params(m.path) {
        if m.parameters.property(name).is_none() {
            return Err(ExportError::PathParam {
                method: m.method,
                path: m.path,
                name: name.to_string(),
            });
        }
    }
    Ok(())
}

/// The access rule in PVE's own grammar: `{"user": "all"}` or `{"check": [...]}` with
/// `["perm", path, [privs], "any", 1]`, `["and", ...]` and `["or", ...]`.
pub fn permissions(access: &Access) -> Value {
    match access {
        Access::World => json!({"user": "world"}),
        Access::Authenticated => json!({"user": "all"}),
        rule => json!({ "check": check(rule) }),
    }
}

fn check(access: &Access) -> Value {
    match access {
        Access::World => json!(["user", "world"]),
        Access::Authenticated => json!(["user", "all"]),
        Access::Perm { path, privs, any } => {
            let mut v = vec![json!("perm"), json!(path), json!(privs)];
            if *any {
                v.extend([json!("any"), json!(1)]);
            }
            Value::Array(v)
        }
        Access::And(rules) => combine("and", rules),
        Access::Or(rules) => combine("or", rules),
    }
}

fn combine(op: &str, rules: &[Access]) -> Value {
    Value::Array(
        std::iter::once(json!(op))
            .chain(rules.iter().map(check))
            .collect(),
    )
}

/// The return shape as PVE's apidata shows it.
fn returns(r: &Returns) -> Value {
    let object = |fields: &[&str]| {
        let mut v = json!({"type": "object"});
        if !fields.is_empty() {
            let properties: Map<String, Value> =
                fields.iter().map(|f| (f.to_string(), json!({}))).collect();
            v["properties"] = Value::Object(properties);
        }
        v
    };
    match r {
        Returns::Null => json!({"type": "null"}),
        Returns::String(what) => json!({"type": "string", "description": what}),
        Returns::Object(fields) => object(fields),
        Returns::ArrayOf(fields) => json!({"type": "array", "items": object(fields)}),
        Returns::OrNull(inner) => {
            let mut v = returns(inner);
            v["optional"] = json!(1);
            v
        }
    }
}

/// `isolib-api.json`: one entry per method, sorted by path, then GET, POST, PUT, DELETE.
pub fn api_description(routes: &[&ApiMethod]) -> Result<Value, ExportError> {
    let mut out = Vec::new();
    for m in sorted(routes) {
        check_path_params(m)?;
        out.push(json!({
            "path": m.path,
            "method": m.method,
            "description": m.description,
            "parameters": schema_export::object(&m.parameters),
            "returns": returns(&m.returns),
            "permissions": permissions(&m.access),
            "allowtoken": u8::from(m.allow_token),
        }));
    }
    Ok(Value::Array(out))
}

/// `openapi.json`: OpenAPI 3.0.3 with paths under `/api2/json`.
pub fn openapi(routes: &[&ApiMethod]) -> Result<Value, ExportError> {
    let mut paths = Map::new();
    for m in sorted(routes) {
        check_path_params(m)?;
        let url = format!("/api2/json{}", m.path);
        let entry = paths.entry(url).or_insert_with(|| json!({}));
        entry[m.method.to_ascii_lowercase()] = operation(m)?;
    }
    Ok(json!({
        "openapi": "3.0.3",
        "info": {
            "title": "isolib",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The Proxmox VE REST API subset isolib serves. Generated by `isolib schema` from the table the daemon validates requests with.",
        },
        "servers": [{
            "url": "https://{host}:{port}",
            "variables": {"host": {"default": "127.0.0.1"}, "port": {"default": "8016"}},
        }],
        "security": [{"PVEAPIToken": []}],
        "components": {
            "securitySchemes": {
                "PVEAPIToken": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "PVEAPIToken=USER@REALM!TOKENID=SECRET",
                },
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "data": {"nullable": true},
                        "message": {"type": "string"},
                        "errors": {
                            "type": "object",
                            "description": "Parameter name → error text.",
                            "additionalProperties": {"type": "string"},
                        },
                    },
                },
            },
            "responses": {
                "ParameterError": error_response("Parameter verification failed: `errors` names each failing parameter."),
                "Unauthorized": {"description": "Authentication failed."},
                "Forbidden": error_response("Permission check failed."),
                "ServerError": error_response("The handler failed; the status line carries the message."),
            },
        },
        "paths": paths,
    }))
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    })
}

fn operation(m: &ApiMethod) -> Result<Value, ExportError> {
    let in_path = path_params(m.path);
    let last = in_path.last().copied();
    let mut params = Vec::new();
    let mut body: Vec<&Property> = Vec::new();
    for p in m.parameters.properties {
        if in_path.contains(&p.name) {
            let mut param = json!({
                "name": p.name,
                "in": "path",
                // OpenAPI requires path parameters; an optional one is still in every URL.
                "required": true,
                "description": p.description,
                "schema": schema_export::openapi_schema(p.schema),
            });
            if p.name == "volume" && last == Some("volume") {
                param["x-matches-rest-of-path"] = json!(true);
            }
            params.push(param);
        } else if matches!(m.method, "POST" | "PUT") {
            body.push(p);
        } else {
            params.push(json!({
                "name": p.name,
                "in": "query",
                "required": !p.optional,
                "description": p.description,
                "schema": schema_export::openapi_property(p),
            }));
        }
    }
    let data = returns(&m.returns);
    let mut op = json!({
        "operationId": operation_id(m),
        "summary": m.description,
        "x-permissions": permissions(&m.access),
        "responses": {
            "200": {
                "description": "Success.",
                "content": {"application/json": {"schema": {
                    "type": "object",
                    "properties": {"data": openapi_returns(&data)},
                }}},
            },
            "400": {"$ref": "#/components/responses/ParameterError"},
            "401": {"$ref": "#/components/responses/Unauthorized"},
            "403": {"$ref": "#/components/responses/Forbidden"},
            "500": {"$ref": "#/components/responses/ServerError"},
        },
    });
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }
    if !body.is_empty() {
        let schema =
            schema_export::openapi_object(body.iter().copied(), m.parameters.additional_properties);
        op["requestBody"] = json!({
            "required": body.iter().any(|p| !p.optional),
            "content": {"application/x-www-form-urlencoded": {"schema": schema}},
        });
    }
    if !m.allow_token {
        op["x-allowtoken"] = json!(0);
    }
    Ok(op)
}

/// `get_nodes_node_storage_storage_content`, unique per method and path.
fn operation_id(m: &ApiMethod) -> String {
    let mut id = m.method.to_ascii_lowercase();
    for seg in m.path.split('/').filter(|s| !s.is_empty()) {
        id.push('_');
        id.extend(
            seg.chars()
                .filter(|c| !matches!(c, '{' | '}'))
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
        );
    }
    id
}

/// The apidata return shape as an OpenAPI schema: `null` becomes `nullable`, `optional` too.
fn openapi_returns(shape: &Value) -> Value {
    let mut v = shape.clone();
    let Some(m) = v.as_object_mut() else {
        return v;
    };
    if m.get("type") == Some(&json!("null")) {
        return json!({"nullable": true});
    }
    if m.remove("optional").is_some() {
        m.insert("nullable".into(), json!(true));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ROUTER;

    #[test]
    fn every_route_exports() {
        let routes = ROUTER.methods();
        let [(_, api), (_, openapi)] = files(&routes).expect("export");
        assert!(api.ends_with("]\n") && openapi.ends_with("}\n"));
        let v: Value = serde_json::from_str(&api).expect("json");
        assert_eq!(v.as_array().map(Vec::len), Some(routes.len()));
    }

    #[test]
    fn return_shapes() {
        assert_eq!(returns(&Returns::Null), json!({"type": "null"}));
        static UPID: Returns = Returns::String("UPID");
        assert_eq!(
            returns(&Returns::OrNull(&UPID)),
            json!({"type": "string", "description": "UPID", "optional": 1})
        );
        assert_eq!(
            returns(&Returns::ArrayOf(&["n", "t"])),
            json!({"type": "array", "items": {"type": "object",
                "properties": {"n": {}, "t": {}}}})
        );
        assert_eq!(returns(&Returns::Object(&[])), json!({"type": "object"}));
    }

    #[test]
    fn permissions_in_pve_grammar() {
        static RULE: Access = Access::And(&[
            Access::Perm {
                path: "/storage/{storage}",
                privs: &["Datastore.AllocateTemplate"],
                any: false,
            },
            Access::Or(&[Access::Perm {
                path: "/",
                privs: &["Sys.Audit", "Sys.Modify"],
                any: true,
            }]),
        ]);
        assert_eq!(
            permissions(&RULE),
            json!({"check": ["and",
                ["perm", "/storage/{storage}", ["Datastore.AllocateTemplate"]],
                ["or", ["perm", "/", ["Sys.Audit", "Sys.Modify"], "any", 1]]]})
        );
        assert_eq!(permissions(&Access::Authenticated), json!({"user": "all"}));
    }
}
