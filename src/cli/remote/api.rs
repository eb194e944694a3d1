//! The API calls the client makes, each returning a typed answer (spec §1, §3, §4, §7).
//! Perl-side PVE sends numbers and booleans as strings at times, so those fields are read
//! leniently.

use serde::Deserialize;

use super::conn::{Connection, segment};
use super::error::ClientError;
use super::params::{Checksum, Compression, Content};

pub use crate::api::replies::{
    ContentItem, StorageStatus, TaskListItem, TaskStatus, UrlMetadata, VolumeInfo,
};

/// A task log line; `n` counts from 1 (spec §4.6).
#[derive(Deserialize, Debug, Clone)]
pub struct LogLine {
    #[serde(deserialize_with = "crate::pve::perl_serde::number")]
    pub n: u64,
    #[serde(default)]
    pub t: String,
}

/// The parameters of download-url (spec §1.1), sent as the web UI sends them (§8 step 2).
#[derive(Debug, Clone)]
pub struct DownloadRequest {
    pub storage: String,
    pub url: String,
    pub filename: String,
    pub content: Content,
    pub checksum: Option<Checksum>,
    pub compression: Option<Compression>,
    pub verify_certificates: bool,
    /// isolib's `nodes`: the other nodes that get a copy.
    pub nodes: Option<String>,
    /// isolib's `connections`: segments fetched at once.
    pub connections: Option<u8>,
}

impl DownloadRequest {
    pub fn form(&self) -> Vec<(&'static str, String)> {
        let mut form = vec![
            ("url", self.url.clone()),
            ("filename", self.filename.clone()),
            ("content", self.content.as_str().to_string()),
        ];
        if let Some(c) = &self.checksum {
            form.push(("checksum-algorithm", c.algorithm.to_string()));
            form.push(("checksum", c.hex.clone()));
        }
        if let Some(c) = self.compression {
            form.push(("compression", c.as_str().to_string()));
        }
        // PVE takes only 0/1 for booleans in form data (spec §1.1).
        if !self.verify_certificates {
            form.push(("verify-certificates", "0".into()));
        }
        if let Some(n) = &self.nodes {
            form.push(("nodes", n.clone()));
        }
        if let Some(n) = self.connections {
            form.push(("connections", n.to_string()));
        }
        form
    }
}

pub async fn storages(
    conn: &Connection,
    content: Option<&str>,
) -> Result<Vec<StorageStatus>, ClientError> {
    let query: Vec<(&str, String)> = content
        .map(|c| ("content", c.to_string()))
        .into_iter()
        .collect();
    Ok(conn
        .get(&format!("{}/storage", conn.node_path()), &query)
        .await?
        .data)
}

pub async fn content(
    conn: &Connection,
    storage: &str,
    content: Option<&str>,
) -> Result<Vec<ContentItem>, ClientError> {
    let query: Vec<(&str, String)> = content
        .map(|c| ("content", c.to_string()))
        .into_iter()
        .collect();
    let path = format!("{}/storage/{}/content", conn.node_path(), segment(storage));
    Ok(conn.get(&path, &query).await?.data)
}

/// Starts the download task and returns its UPID.
pub async fn download_url(conn: &Connection, req: &DownloadRequest) -> Result<String, ClientError> {
    let path = format!(
        "{}/storage/{}/download-url",
        conn.node_path(),
        segment(&req.storage)
    );
    Ok(conn.post::<String>(&path, &req.form()).await?.data)
}

pub async fn url_metadata(
    conn: &Connection,
    url: &str,
    verify_certificates: bool,
) -> Result<UrlMetadata, ClientError> {
    let mut query = vec![("url", url.to_string())];
    if !verify_certificates {
        query.push(("verify-certificates", "0".into()));
    }
    let path = format!("{}/query-url-metadata", conn.node_path());
    Ok(conn
        .get::<Option<UrlMetadata>>(&path, &query)
        .await?
        .data
        .unwrap_or_default())
}

pub async fn tasks(
    conn: &Connection,
    limit: u64,
    errors_only: bool,
) -> Result<Vec<TaskListItem>, ClientError> {
    // `all`: running tasks first, then the archive; PVE's default shows finished ones only.
    let mut query = vec![("limit", limit.to_string()), ("source", "all".into())];
    if errors_only {
        query.push(("errors", "1".into()));
    }
    Ok(conn
        .get(&format!("{}/tasks", conn.node_path()), &query)
        .await?
        .data)
}

fn task_path(conn: &Connection, upid: &str) -> String {
    format!("{}/tasks/{}", conn.node_path(), segment(upid))
}

pub async fn task_status(conn: &Connection, upid: &str) -> Result<TaskStatus, ClientError> {
    Ok(conn
        .get(&format!("{}/status", task_path(conn, upid)), &[])
        .await?
        .data)
}

/// The log lines after the first `start` ones (`limit=0`: all that remain).
pub async fn task_log(
    conn: &Connection,
    upid: &str,
    start: u64,
) -> Result<Vec<LogLine>, ClientError> {
    let query = [("start", start.to_string()), ("limit", "0".to_string())];
    Ok(conn
        .get(&format!("{}/log", task_path(conn, upid)), &query)
        .await?
        .data)
}

pub async fn stop_task(conn: &Connection, upid: &str) -> Result<(), ClientError> {
    conn.delete::<serde_json::Value>(&task_path(conn, upid))
        .await
        .map(|_| ())
}

/// Deletes a volume; PVE answers with the UPID of an `imgdel` task, or null when done (§7.4).
pub async fn delete_volume(
    conn: &Connection,
    storage: &str,
    volid: &str,
) -> Result<Option<String>, ClientError> {
    Ok(conn
        .delete::<Option<String>>(&volume_path(conn, storage, volid))
        .await?
        .data)
}

fn volume_path(conn: &Connection, storage: &str, volid: &str) -> String {
    format!(
        "{}/storage/{}/content/{}",
        conn.node_path(),
        segment(storage),
        segment(volid)
    )
}

/// A volume's attributes and catalog record.
pub async fn volume_info(
    conn: &Connection,
    storage: &str,
    volid: &str,
) -> Result<VolumeInfo, ClientError> {
    Ok(conn
        .get(&volume_path(conn, storage, volid), &[])
        .await?
        .data)
}

/// Starts a verify task over one volume, or all of `storage` (`volid` none).
pub async fn verify(
    conn: &Connection,
    storage: &str,
    volid: Option<&str>,
    repair: bool,
) -> Result<String, ClientError> {
    let mut form = Vec::new();
    if let Some(v) = volid {
        form.push(("volume", v.to_string()));
    }
    if repair {
        form.push(("repair", "1".to_string()));
    }
    let path = format!("{}/storage/{}/verify", conn.node_path(), segment(storage));
    Ok(conn.post::<String>(&path, &form).await?.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perl_style_values_are_read() {
        let s: StorageStatus = serde_json::from_str(
            r#"{"storage":"local","type":"dir","content":"iso","enabled":"1","active":0}"#,
        )
        .unwrap();
        assert!(s.enabled);
        assert!(!s.active);
        let v: ContentItem =
            serde_json::from_str(r#"{"volid":"local:iso/a.iso","size":"42","format":"iso"}"#)
                .unwrap();
        assert_eq!(v.size, 42);
        let l: Vec<LogLine> =
            serde_json::from_str(r#"[{"n":1,"t":"x"},{"n":"2","t":"y"}]"#).unwrap();
        assert_eq!(l[1].n, 2);
    }

    #[test]
    fn download_form_matches_the_ui() {
        let req = DownloadRequest {
            storage: "local".into(),
            url: "https://h/x.iso.gz".into(),
            filename: "x.iso".into(),
            content: Content::Iso,
            checksum: Some(Checksum {
                algorithm: "sha256",
                hex: "ab".repeat(32),
            }),
            compression: Some(Compression::Gz),
            verify_certificates: false,
            nodes: None,
            connections: Some(4),
        };
        let form = req.form();
        assert_eq!(
            form.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            [
                "url",
                "filename",
                "content",
                "checksum-algorithm",
                "checksum",
                "compression",
                "verify-certificates",
                "connections"
            ]
        );
        assert_eq!(form[7].1, "4");
        assert_eq!(form[6].1, "0");
    }
}
