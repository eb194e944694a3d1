//! One declaration per endpoint ([`ApiMethod`]): path, parameter schema, access rule and
//! handler. The dispatcher validates against it, the schema export walks it, and nothing
//! repeats it (style.md §1.1).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};

use super::ApiError;
use crate::auth::{AccessConfig, AuthId};
use crate::schema::{ObjectSchema, Property};
use crate::state::AppState;
use crate::tasks::Upid;

/// What a handler gets besides its parameters.
pub struct Ctx {
    pub state: AppState,
    /// Who is calling; `None` only for [`Access::World`] methods.
    pub auth: Option<AuthId>,
    pub access: Arc<AccessConfig>,
    /// The PVE task this request is made for, when the shim makes it from inside one.
    pub pve_task: Option<Upid>,
    /// The caller's credentials as its request carried them (token header, ticket cookie,
    /// CSRF token), for what this request asks of other nodes.
    pub credentials: Vec<(String, String)>,
}

impl Ctx {
    pub fn node(&self) -> &str {
        &self.state.config().node
    }

    /// The caller of a method that requires authentication.
    pub fn auth(&self) -> Result<&AuthId, ApiError> {
        self.auth
            .as_ref()
            .ok_or_else(|| ApiError::new(401, "No ticket\n"))
    }

    /// Whose task a task started by this request is: the user of the PVE task it is made for
    /// (PVE already checked that user's permissions), else the caller.
    pub fn task_user(&self) -> Result<String, ApiError> {
        match &self.pve_task {
            Some(upid) => Ok(upid.user.clone()),
            None => Ok(self.auth()?.to_string()),
        }
    }

    /// PVE's rule for reaching the network from this node ([`NETWORK_ACCESS`]), for methods
    /// whose storage comes from the body.
    /// The credentials a request to another node carries for this one: the caller's as they
    /// came, or, for a caller on the local socket (root on this host, which sends none), this
    /// node's own.
    pub fn peer_credentials(&self) -> Result<Vec<(String, String)>, ApiError> {
        let own: Vec<(String, String)> = self
            .credentials
            .iter()
            .filter(|(k, _)| {
                crate::cluster::forward::CREDENTIAL_HEADERS
                    .iter()
                    .any(|c| k.eq_ignore_ascii_case(c))
            })
            .cloned()
            .collect();
        if !own.is_empty() {
            return Ok(own);
        }
        self.state
            .tickets()
            .node_credentials()
            .map_err(ApiError::server)
    }

    pub fn has_network_access(&self) -> bool {
        self.has("/", &["Sys.Audit", "Sys.Modify"], false)
            || self.has(
                &format!("/nodes/{}", self.node()),
                &["Sys.AccessNetwork"],
                false,
            )
    }

    pub fn has(&self, path: &str, privs: &[&str], any: bool) -> bool {
        self.auth
            .as_ref()
            .is_some_and(|a| self.access.check(a, path, privs, any))
    }
}

pub enum Reply {
    Data(Value),
    /// Data plus the envelope's `total`.
    Counted(Value, u64),
    /// A raw body (the task-log download), with extra headers.
    Raw {
        content_type: &'static str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
}

pub type Params = Map<String, Value>;
pub type Handler = fn(Ctx, Params) -> BoxFuture<'static, Result<Reply, ApiError>>;

/// PVE's permission expressions, over ACL paths with `{param}` placeholders.
pub enum Access {
    /// No authentication at all (PVE's `user => 'world'`): logging in.
    World,
    /// Any authenticated user; the handler checks further (task owner, per-item filters).
    Authenticated,
    Perm {
        path: &'static str,
        privs: &'static [&'static str],
        any: bool,
    },
    And(&'static [Access]),
    Or(&'static [Access]),
}

impl Access {
    /// Every one of `privs` on `path`.
    pub const fn all(path: &'static str, privs: &'static [&'static str]) -> Access {
        Access::Perm {
            path,
            privs,
            any: false,
        }
    }

    /// Checks the rule with PVE's failure texts: a failing leaf names its path and privilege,
    /// a failing `or` names nothing (spec/pve-api.md §1.2).
    pub fn check(
        &self,
        acl: &AccessConfig,
        who: &AuthId,
        path_params: &BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        match self {
            Access::World | Access::Authenticated => Ok(()),
            Access::Perm { path, privs, any } => {
                let path = substitute(path, path_params);
                if *any {
                    if acl.check(who, &path, privs, true) {
                        return Ok(());
                    }
                    return Err(ApiError::permission(Some(&format!(
                        "{path}, {}",
                        privs.join("|")
                    ))));
                }
                for p in privs.iter() {
                    if !acl.check(who, &path, &[p], false) {
                        return Err(ApiError::permission(Some(&format!("{path}, {p}"))));
                    }
                }
                Ok(())
            }
            Access::And(rules) => rules
                .iter()
                .try_for_each(|r| r.check(acl, who, path_params)),
            Access::Or(rules) => {
                if rules.iter().any(|r| r.check(acl, who, path_params).is_ok()) {
                    Ok(())
                } else {
                    Err(ApiError::permission(None))
                }
            }
        }
    }
}

/// The privileges that let a user see a storage and what it holds (pve-storage's index and
/// listing methods, `any`).
pub const STORAGE_AUDIT_PRIVS: &[&str] = &["Datastore.Audit", "Datastore.AllocateSpace"];

/// Seeing a storage and what it holds.
pub const STORAGE_AUDIT: Access = Access::Perm {
    path: "/storage/{storage}",
    privs: STORAGE_AUDIT_PRIVS,
    any: true,
};

/// Changing what a storage holds or how it is configured.
pub const STORAGE_ALLOCATE: Access = Access::all("/storage/{storage}", &["Datastore.Allocate"]);

/// PVE's rule for reaching the network from a node (download-url, query-url-metadata): both
/// `Sys.Audit` and `Sys.Modify` on `/` (no `any`), or `Sys.AccessNetwork` on the node
/// (spec/pve-api.md §1.2).
pub const NETWORK_ACCESS: Access = Access::Or(&[
    Access::all("/", &["Sys.Audit", "Sys.Modify"]),
    Access::all("/nodes/{node}", &["Sys.AccessNetwork"]),
]);

fn substitute(template: &str, params: &BTreeMap<String, String>) -> String {
    let mut out = template.to_string();
    for (k, v) in params {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// What a method returns, as PVE's `returns` describes it in the exported schema.
pub enum Returns {
    Null,
    /// A string; the text says what it holds (`UPID`).
    String(&'static str),
    /// An object with these fields; none for one whose fields vary.
    Object(&'static [&'static str]),
    /// An array of such objects.
    ArrayOf(&'static [&'static str]),
    /// The shape, or null.
    OrNull(&'static Returns),
}

pub struct ApiMethod {
    pub method: &'static str,
    /// `/nodes/{node}/storage/{storage}/content/{volume}`; a last `{volume}` takes the rest of
    /// the path, slashes included, as PVE's `fragmentDelimiter => ''` does.
    pub path: &'static str,
    pub description: &'static str,
    pub parameters: ObjectSchema,
    /// The return shape, for the exported schema.
    pub returns: Returns,
    pub access: Access,
    /// PVE's `allowtoken`: false only for ticket-only endpoints.
    pub allow_token: bool,
    /// PVE's upload method: a multipart body streamed into a file (http/upload.rs), with no
    /// CSRF token needed and the permission checked before the body is read.
    pub upload: bool,
    pub handler: Handler,
}

/// Declarations state only what differs from the common case: any authenticated user, tokens
/// allowed, no parameters, returning null, not an upload.
impl ApiMethod {
    const fn new(method: &'static str, path: &'static str, handler: Handler) -> ApiMethod {
        ApiMethod {
            method,
            path,
            description: "",
            parameters: ObjectSchema {
                properties: &[],
                additional_properties: false,
            },
            returns: Returns::Null,
            access: Access::Authenticated,
            allow_token: true,
            upload: false,
            handler,
        }
    }

    pub const fn get(path: &'static str, handler: Handler) -> ApiMethod {
        ApiMethod::new("GET", path, handler)
    }

    pub const fn post(path: &'static str, handler: Handler) -> ApiMethod {
        ApiMethod::new("POST", path, handler)
    }

    pub const fn put(path: &'static str, handler: Handler) -> ApiMethod {
        ApiMethod::new("PUT", path, handler)
    }

    pub const fn delete(path: &'static str, handler: Handler) -> ApiMethod {
        ApiMethod::new("DELETE", path, handler)
    }

    pub const fn describe(mut self, description: &'static str) -> ApiMethod {
        self.description = description;
        self
    }

    pub const fn params(mut self, properties: &'static [Property]) -> ApiMethod {
        self.parameters.properties = properties;
        self
    }

    pub const fn returns(mut self, returns: Returns) -> ApiMethod {
        self.returns = returns;
        self
    }

    pub const fn access(mut self, access: Access) -> ApiMethod {
        self.access = access;
        self
    }

    /// PVE's `allowtoken => 0`: the ticket endpoints.
    pub const fn ticket_only(mut self) -> ApiMethod {
        self.allow_token = false;
        self
    }

    pub const fn upload(mut self) -> ApiMethod {
        self.upload = true;
        self
    }
}

/// One level of the URL tree, as proxmox-router's `Router`: the methods at this path, the
/// fixed names below it, and at most one `{param}` level. Each `api/*.rs` exports the
/// subtree of its path group; `api::ROUTER` is the root.
pub struct Router {
    pub methods: &'static [&'static ApiMethod],
    pub subdirs: &'static [(&'static str, &'static Router)],
    /// A parameter that takes one path segment; `volume` takes the rest of the path, slashes
    /// included, as PVE's `fragmentDelimiter => ''` does.
    pub match_all: Option<(&'static str, &'static Router)>,
}

impl Default for Router {
    fn default() -> Self {
        Router::new()
    }
}

impl Router {
    pub const fn new() -> Router {
        Router {
            methods: &[],
            subdirs: &[],
            match_all: None,
        }
    }

    /// A path with methods and nothing below it.
    pub const fn leaf(methods: &'static [&'static ApiMethod]) -> Router {
        Router {
            methods,
            subdirs: &[],
            match_all: None,
        }
    }

    /// A collection: `methods` here, and each item below it by its `param`.
    pub const fn items(
        methods: &'static [&'static ApiMethod],
        param: &'static str,
        item: &'static Router,
    ) -> Router {
        Router {
            methods,
            subdirs: &[],
            match_all: Some((param, item)),
        }
    }

    /// Every method of the tree, in no particular order.
    pub fn methods(&'static self) -> Vec<&'static ApiMethod> {
        let mut out = self.methods.to_vec();
        for (_, sub) in self.subdirs {
            out.extend(sub.methods());
        }
        if let Some((_, sub)) = self.match_all {
            out.extend(sub.methods());
        }
        out
    }

    /// Finds the method for `method` + `rel_path` and the path parameters it binds. Empty
    /// segments are skipped, so trailing and double slashes route like PVE's.
    pub fn find(
        &'static self,
        method: &str,
        rel_path: &str,
    ) -> Option<(&'static ApiMethod, BTreeMap<String, String>)> {
        let segs: Vec<&str> = rel_path.split('/').filter(|s| !s.is_empty()).collect();
        let mut node = self;
        let mut params = BTreeMap::new();
        let mut i = 0;
        while i < segs.len() {
            if let Some((_, sub)) = node.subdirs.iter().find(|(name, _)| *name == segs[i]) {
                node = sub;
                i += 1;
                continue;
            }
            let (name, sub) = node.match_all?;
            if name == "volume" {
                params.insert(name.to_string(), segs[i..].join("/"));
                i = segs.len();
            } else {
                params.insert(name.to_string(), segs[i].to_string());
                i += 1;
            }
            node = sub;
        }
        let m = node.methods.iter().find(|m| m.method == method)?;
        Some((*m, params))
    }

    /// The node at a path template (`/nodes/{node}/tasks/{upid}`).
    fn at(&'static self, path: &str) -> Option<&'static Router> {
        let mut node = self;
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            node = match node.subdirs.iter().find(|(name, _)| *name == seg) {
                Some((_, sub)) => sub,
                None => {
                    node.match_all
                        .filter(|(name, _)| format!("{{{name}}}") == seg)?
                        .1
                }
            };
        }
        Some(node)
    }

    /// A directory index (PVE's `subdir` lists): the names below `path`, sorted, each as
    /// `{key: name}`. A new method shows up in its parent's index by being mounted.
    pub fn index(&'static self, path: &str, key: &str) -> Reply {
        let mut names: Vec<&str> = self
            .at(path)
            .map(|n| n.subdirs.iter().map(|(name, _)| *name).collect())
            .unwrap_or_default();
        names.sort_unstable();
        Reply::Data(Value::Array(
            names
                .into_iter()
                .map(|n| serde_json::json!({ key: n }))
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_list_the_routes_below() {
        let names = |path, key| match crate::api::ROUTER.index(path, key) {
            Reply::Data(v) => v.to_string(),
            _ => unreachable!("index replies with data"),
        };
        assert_eq!(
            names("/nodes/{node}", "name"),
            r#"[{"name":"aplinfo"},{"name":"inventory"},{"name":"query-url-metadata"},{"name":"storage"},{"name":"tasks"},{"name":"version"}]"#
        );
        assert_eq!(
            names("/nodes/{node}/tasks/{upid}", "name"),
            r#"[{"name":"log"},{"name":"status"}]"#
        );
        assert_eq!(
            names("/nodes/{node}/storage/{storage}", "subdir"),
            r#"[{"subdir":"content"},{"subdir":"download-url"},{"subdir":"peer-copy"},{"subdir":"status"},{"subdir":"upload"},{"subdir":"verify"}]"#
        );
    }

    #[test]
    fn binds_params_and_swallows_volume() {
        let root = &crate::api::ROUTER;
        let (m, p) = root
            .find("GET", "/nodes/n1/tasks/UPID:x/log")
            .expect("match");
        assert_eq!(m.path, "/nodes/{node}/tasks/{upid}/log");
        assert_eq!(p["node"], "n1");
        assert_eq!(p["upid"], "UPID:x");
        let (m, p) = root
            .find("DELETE", "//nodes/n/storage/local/content/local:iso/x.iso/")
            .expect("match");
        assert_eq!(m.path, "/nodes/{node}/storage/{storage}/content/{volume}");
        assert_eq!(p["volume"], "local:iso/x.iso");
        assert!(root.find("GET", "/nodes/n/extra").is_none());
        assert!(root.find("GET", "/nodes/n/status").is_none());
        assert!(root.find("POST", "/nodes/n/version").is_none());
    }

    /// Every method is mounted where its declared path says, once (the export and the
    /// permission paths read `path`; the dispatcher reads the tree).
    #[test]
    fn every_method_sits_at_its_path() {
        fn walk(r: &'static Router, path: String, out: &mut Vec<(String, &'static ApiMethod)>) {
            out.extend(r.methods.iter().map(|m| (path.clone(), *m)));
            for (name, sub) in r.subdirs {
                walk(sub, format!("{path}/{name}"), out);
            }
            if let Some((name, sub)) = r.match_all {
                walk(sub, format!("{path}/{{{name}}}"), out);
            }
        }
        let mut found = Vec::new();
        walk(&crate::api::ROUTER, String::new(), &mut found);
        for (path, m) in &found {
            assert_eq!(path, m.path, "{} mounted at {path}", m.method);
        }
        let mut keys: Vec<_> = found.iter().map(|(p, m)| (p.clone(), m.method)).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), found.len(), "a method mounted twice");
    }
}
