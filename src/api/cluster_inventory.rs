//! `GET /cluster/isolib/inventory` (isolib): every volume of every node, with its sha256 and,
//! per node, whether it is there and what its last verification said. Each other node is asked
//! for its own inventory with the caller's credentials, so each lists what the caller may see
//! there; a node that does not answer is reported as such, not left out.

use std::collections::BTreeMap;

use serde::Serialize;

use super::ApiError;
use super::router::{ApiMethod, Ctx, Params, Reply, Returns};
use crate::catalog::VerifyState;
use crate::cluster::forward;
use crate::library::inventory::{Entry, Inventory};

pub static METHOD: ApiMethod = ApiMethod::get("/cluster/isolib/inventory", |ctx, p| {
    Box::pin(inventory(ctx, p))
})
.describe("Every volume of every node, with its sha256 and each node's state (isolib).")
.returns(Returns::ArrayOf(&[
    "volid", "content", "sha256", "size", "nodes",
]));

/// One volume across the cluster.
#[serde_with::skip_serializing_none]
#[derive(Debug, Serialize, PartialEq)]
pub(super) struct Row {
    pub volid: String,
    pub content: String,
    pub sha256: Option<String>,
    pub size: Option<u64>,
    /// Node → `verified`, `present` (not verified yet), `failed`, `different` (other bytes
    /// than the other nodes'), `missing`, or `unknown` (the node did not answer).
    pub nodes: BTreeMap<String, &'static str>,
}

impl Row {
    /// The nodes that hold the volume's bytes, by their record.
    pub fn holders(&self) -> impl Iterator<Item = &str> {
        self.nodes
            .iter()
            .filter(|(_, s)| matches!(**s, "verified" | "present"))
            .map(|(n, _)| n.as_str())
    }
}

async fn inventory(ctx: Ctx, _: Params) -> Result<Reply, ApiError> {
    let rows = rows(&ctx).await?;
    Ok(Reply::Data(
        serde_json::to_value(rows).map_err(ApiError::server)?,
    ))
}

/// Every volume of every node, as the caller may see them.
pub(super) async fn rows(ctx: &Ctx) -> Result<Vec<Row>, ApiError> {
    let mut all: Vec<(String, Result<Inventory, String>)> = vec![(
        ctx.node().to_owned(),
        Ok(super::inventory::local(ctx).await?),
    )];
    let names = ctx.state.config().peer_names().map_err(ApiError::server)?;
    let credentials = ctx.peer_credentials()?;
    for name in names {
        let got = peer_inventory(ctx, &credentials, &name).await;
        if let Err(e) = &got {
            tracing::warn!("cluster inventory: node '{name}': {e}");
        }
        all.push((name, got));
    }
    Ok(merge(&all))
}

async fn peer_inventory(
    ctx: &Ctx,
    credentials: &[(String, String)],
    name: &str,
) -> Result<Inventory, String> {
    let peer = ctx
        .state
        .config()
        .peer(name)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("node '{name}' is not known"))?;
    let data = forward::call(
        peer,
        credentials,
        "GET",
        &format!("/nodes/{name}/inventory"),
        None,
    )
    .await?;
    serde_json::from_value(data).map_err(|e| e.to_string())
}

fn state_of(e: &Entry) -> &'static str {
    match &e.verification {
        Some(v) if v.state == VerifyState::Failed => "failed",
        Some(_) => "verified",
        None => "present",
    }
}

/// One row per volume ID, the sha256 most nodes hold as the volume's.
fn merge(all: &[(String, Result<Inventory, String>)]) -> Vec<Row> {
    let mut by_volid: BTreeMap<&str, Vec<(&str, &Entry)>> = BTreeMap::new();
    for (node, inv) in all {
        for e in inv.iter().flat_map(|i| &i.volumes) {
            by_volid.entry(&e.volid).or_default().push((node, e));
        }
    }
    by_volid
        .into_iter()
        .map(|(volid, held)| {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for (_, e) in &held {
                if let Some(s) = &e.sha256 {
                    *counts.entry(s).or_default() += 1;
                }
            }
            let sha256 = counts
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(s, _)| (*s).to_owned());
            let nodes = all
                .iter()
                .map(|(node, inv)| {
                    let state = match inv {
                        Err(_) => "unknown",
                        Ok(_) => match held.iter().find(|(n, _)| n == node) {
                            None => "missing",
                            Some((_, e)) if e.sha256.is_some() && e.sha256 != sha256 => "different",
                            Some((_, e)) => state_of(e),
                        },
                    };
                    (node.clone(), state)
                })
                .collect();
            let first = held[0].1;
            Row {
                volid: volid.to_owned(),
                content: first.content.clone(),
                size: held
                    .iter()
                    .find(|(_, e)| e.sha256 == sha256)
                    .and_then(|(_, e)| e.size),
                sha256,
                nodes,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Verification;

    fn entry(volid: &str, sha: &str, verified: Option<VerifyState>) -> Entry {
        Entry {
            volid: volid.into(),
            content: "iso".into(),
            sha256: Some(sha.into()),
            size: Some(1),
            verification: verified.map(|state| Verification {
                state,
                time: 0,
                upid: None,
            }),
            ..Entry::default()
        }
    }

    fn inv(node: &str, volumes: Vec<Entry>) -> Inventory {
        Inventory {
            format_version: 1,
            node: node.into(),
            exported: 0,
            volumes,
        }
    }

    #[test]
    fn each_node_says_what_it_holds() {
        let all = vec![
            (
                "n1".to_owned(),
                Ok(inv(
                    "n1",
                    vec![entry("l:iso/a.iso", "aa", Some(VerifyState::Ok))],
                )),
            ),
            (
                "n2".to_owned(),
                Ok(inv(
                    "n2",
                    vec![
                        entry("l:iso/a.iso", "aa", None),
                        entry("l:iso/b.iso", "bb", Some(VerifyState::Failed)),
                    ],
                )),
            ),
            (
                "n3".to_owned(),
                Ok(inv("n3", vec![entry("l:iso/a.iso", "cc", None)])),
            ),
            ("n4".to_owned(), Err("down".to_owned())),
        ];
        let rows = merge(&all);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].volid, "l:iso/a.iso");
        assert_eq!(rows[0].sha256.as_deref(), Some("aa"));
        assert_eq!(
            rows[0].nodes,
            BTreeMap::from([
                ("n1".to_owned(), "verified"),
                ("n2".to_owned(), "present"),
                ("n3".to_owned(), "different"),
                ("n4".to_owned(), "unknown"),
            ])
        );
        assert_eq!(rows[1].nodes["n1"], "missing");
        assert_eq!(rows[1].nodes["n2"], "failed");
    }
}
