//! `isolib ls [--storage ID] [--content T]`: the volumes of one storage or of all of them.

use super::api::{self, ContentItem};
use super::conn::{ConnectArgs, Connection};
use super::error::ClientError;
use super::table::{self, Align};

#[derive(clap::Args, Debug, Clone)]
pub struct LsArgs {
    /// Only this storage [default: every enabled storage]
    #[arg(long, value_name = "ID")]
    pub storage: Option<String>,
    /// Only this content type (iso, vztmpl, import, ...)
    #[arg(long, value_name = "TYPE")]
    pub content: Option<String>,
    /// Sizes in bytes instead of KiB/MiB/GiB
    #[arg(long)]
    pub bytes: bool,
    #[command(flatten)]
    pub conn: ConnectArgs,
}

pub async fn run(args: LsArgs) -> Result<(), ClientError> {
    let conn = Connection::open(&args.conn)?;
    let content = args.content.as_deref();
    let (volumes, failed, total) = match &args.storage {
        // One storage: its error (no such storage, disabled) is the command's error.
        Some(id) => (api::content(&conn, id, content).await?, 0, 1),
        None => {
            let storages = api::storages(&conn, content).await?;
            let usable: Vec<&str> = storages
                .iter()
                .filter(|s| s.enabled && s.active)
                .filter_map(|s| s.storage.as_deref())
                .collect();
            let mut volumes = Vec::new();
            let mut failed = 0;
            for id in &usable {
                match api::content(&conn, id, content).await {
                    Ok(v) => volumes.extend(v),
                    // One broken storage shouldn't hide the others; the exit status tells.
                    Err(e) => {
                        eprintln!("isolib: storage '{id}': {e}");
                        failed += 1;
                    }
                }
            }
            (volumes, failed, usable.len())
        }
    };
    table::print(&render(&volumes, args.bytes))?;
    if failed > 0 {
        return Err(ClientError::Incomplete { failed, total });
    }
    Ok(())
}

fn render(volumes: &[ContentItem], bytes: bool) -> String {
    let rows: Vec<Vec<String>> = volumes
        .iter()
        .map(|v| {
            let size = if bytes {
                v.size.to_string()
            } else {
                crate::download::human_bytes(v.size)
            };
            vec![
                v.volid.clone(),
                size,
                v.format.clone(),
                v.os.clone().unwrap_or_else(|| "-".into()),
                verified(v).into(),
            ]
        })
        .collect();
    table::render(
        &[
            ("VOLID", Align::Left),
            ("SIZE", Align::Right),
            ("FORMAT", Align::Left),
            ("OS", Align::Left),
            ("VERIFIED", Align::Left),
        ],
        &rows,
    )
}

/// `FAILED` stands out: such a volume is not to be used until it is repaired.
fn verified(v: &ContentItem) -> &'static str {
    use crate::catalog::VerifyState;
    match v.verification.as_ref().map(|v| v.state) {
        Some(VerifyState::Ok) => "ok",
        Some(VerifyState::Failed) => "FAILED",
        None => "-",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_in_bytes() {
        let v = vec![
            ContentItem {
                volid: "local:iso/a.iso".into(),
                size: 1048576,
                format: "iso".into(),
                ..ContentItem::default()
            },
            ContentItem {
                volid: "local:iso/b.iso".into(),
                size: 1,
                format: "iso".into(),
                os: Some("debian11".into()),
                verification: Some(crate::catalog::Verification {
                    state: crate::catalog::VerifyState::Failed,
                    time: 0,
                    upid: None,
                }),
                ..ContentItem::default()
            },
        ];
        assert_eq!(
            render(&v, true),
            "VOLID               SIZE  FORMAT  OS        VERIFIED\n\
             local:iso/a.iso  1048576  iso     -         -\n\
             local:iso/b.iso        1  iso     debian11  FAILED\n"
        );
    }
}
