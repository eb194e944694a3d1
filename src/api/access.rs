//! `/access/ticket`: logging in with a password, or renewing with a ticket in its place
//! (acl:`API2/AccessControl.pm` create_ticket, spec/pve-api.md §6.3).

use std::time::Instant;

use serde_json::{Map, Value, json};

use super::router::{Access, ApiMethod, Ctx, Params, Reply, Returns, Router};
use super::types::{BOOLEAN, STRING, optional, required};
use super::{ApiError, from_params};
use crate::auth::{AccessConfig, AuthId};
use crate::schema::{Schema, StringSchema};

static USERNAME: Schema = Schema::String(StringSchema {
    max_length: Some(64),
    ..StringSchema::new()
});

params!(TICKET_PROPS => TicketParams {
    "username" username: String = required("User name", &USERNAME),
    "password" password: String =
        required("The secret password. This can also be a valid ticket.", &STRING),
    "realm" realm: Option<String> =
        optional("You can optionally pass the realm using this parameter.", &STRING),
    "otp" otp: Option<String> =
        optional("One-time password for Two-factor authentication.", &STRING),
    "path" path: Option<String> = optional(
        "Verify ticket, and check if user have access 'privs' on 'path'",
        &STRING
    ),
    "privs" privs: Option<String> = optional(
        "Verify ticket, and check if user have access 'privs' on 'path'",
        &STRING
    ),
    "new-format" new_format: Option<bool> =
        optional("This parameter is now ignored.", &BOOLEAN),
    "tfa-challenge" tfa_challenge: Option<String> = optional(
        "The signed TFA challenge string the user wants to respond to.",
        &STRING
    ),
});

pub static GET_TICKET: ApiMethod = ApiMethod::get("/access/ticket", |_, _| {
    Box::pin(async { Ok(Reply::Data(Value::Null)) })
})
.describe("Dummy. Useful for formatters which want to provide a login page.")
.access(Access::World)
.ticket_only();

pub static CREATE_TICKET: ApiMethod = ApiMethod::post("/access/ticket", |ctx, params| {
    Box::pin(create_ticket(ctx, params))
})
.describe("Create or verify authentication ticket.")
.params(&TICKET_PROPS)
.returns(Returns::Object(&[
    "username",
    "ticket",
    "CSRFPreventionToken",
    "cap",
]))
.access(Access::World)
.ticket_only();

async fn create_ticket(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let started = Instant::now();
    let p: TicketParams = from_params(params)?;
    let mut username = p.username;
    // PVE appends the realm whatever the name holds: `a@pve` with realm `pam` is `a@pve@pam`.
    if let Some(realm) = p.realm {
        username = format!("{username}@{realm}");
    }
    // This daemon checks passwords only: a second-factor step is never half-done here.
    let result = if p.otp.is_some() || p.tfa_challenge.is_some() {
        Err("second factors are not supported; log in through PVE".to_string())
    } else {
        ctx.state
            .tickets()
            .clone()
            .login(&ctx.access, &username, p.password, None)
            .await
            .map_err(|e| e.to_string())
    };
    match result {
        Ok(issued) => {
            tracing::info!("successful auth for user '{username}'");
            let cap = capabilities(&ctx.access, &issued.username);
            Ok(Reply::Data(json!({
                "username": issued.username,
                "ticket": issued.ticket,
                "CSRFPreventionToken": issued.csrf_token,
                "cap": cap,
            })))
        }
        Err(reason) => {
            tracing::warn!("authentication failure; user '{username}': {reason}");
            // PVE answers a failed login no sooner than the usual delay after it began.
            let delay = ctx.state.config().auth_fail_delay;
            tokio::time::sleep(delay.saturating_sub(started.elapsed())).await;
            Err(ApiError::new(401, "authentication failure\n"))
        }
    }
}

/// The `cap` object the web UI enables its buttons by: per area, the privileges of that
/// family the user holds on the area's root path.
fn capabilities(access: &AccessConfig, user: &str) -> Value {
    const AREAS: [(&str, &str, &[&str]); 7] = [
        ("vms", "/vms", &["VM."]),
        ("storage", "/storage", &["Datastore."]),
        ("access", "/access", &["User.", "Group.", "Realm."]),
        ("nodes", "/nodes", &["Sys."]),
        ("sdn", "/sdn", &["SDN."]),
        ("dc", "/", &["Sys.Audit", "Sys.Modify", "SDN."]),
        ("mapping", "/mapping", &["Mapping."]),
    ];
    let Ok(who) = user.parse::<AuthId>() else {
        return json!({});
    };
    let mut cap = Map::new();
    for (area, path, families) in AREAS {
        let privs: Map<String, Value> = access
            .privileges(&who, path)
            .into_iter()
            .filter(|p| {
                area != "dc" && p == "Permissions.Modify"
                    || families.iter().any(|f| p.starts_with(f))
            })
            .map(|p| (p, json!(1)))
            .collect();
        cap.insert(area.to_string(), Value::Object(privs));
    }
    Value::Object(cap)
}

/// `/access`: logging in.
pub static ROUTER: Router = Router {
    subdirs: &[("ticket", &TICKET_ROUTER)],
    ..Router::new()
};

static TICKET_ROUTER: Router = Router::leaf(&[&GET_TICKET, &CREATE_TICKET]);
