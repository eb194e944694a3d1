//! `isolib download URL --storage ID`: POST download-url, then follow the task to its end.

use super::api::{self, DownloadRequest};
use super::conn::{ConnectArgs, Connection};
use super::error::ClientError;
use super::follow::{self, is_success};
use super::params::{self, Checksum, Compression, Content};

#[derive(clap::Args, Debug, Clone)]
pub struct DownloadArgs {
    /// http(s) URL of the image
    pub url: String,
    /// Target storage
    #[arg(long, value_name = "ID")]
    pub storage: String,
    /// File name in the storage [default: the origin's name for the URL, else its last path
    /// segment; for iso a .gz/.lzo/.zst/.bz2/.xz suffix is cut off and selects --compression]
    #[arg(long, value_name = "NAME")]
    pub filename: Option<String>,
    /// Verify the download, e.g. sha256:<hex> (md5, sha1, sha224, sha256, sha384, sha512)
    #[arg(long, value_name = "ALGO:HEX")]
    pub checksum: Option<Checksum>,
    /// Content type, which decides the directory and allowed extensions
    #[arg(long, value_enum, default_value_t = Content::Iso)]
    pub content: Content,
    /// Decompress the download (iso only)
    #[arg(long, value_enum)]
    pub compression: Option<Compression>,
    /// Don't verify the origin's TLS certificate (verify-certificates 0)
    #[arg(long)]
    pub insecure_origin: bool,
    /// Also copy the image to these nodes once it is in (a list, or `all`): one fetch from the
    /// origin for the whole cluster
    #[arg(long, value_name = "LIST")]
    pub nodes: Option<String>,
    /// Fetch the image over this many connections at once, each a segment, when the origin
    /// answers ranges [default: the daemon's setting]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=16))]
    pub connections: Option<u8>,
    #[command(flatten)]
    pub conn: ConnectArgs,
}

pub async fn run(args: DownloadArgs) -> Result<(), ClientError> {
    let conn = Connection::open(&args.conn)?;
    let (filename, compression) = match &args.filename {
        Some(f) => (f.clone(), args.compression),
        None => {
            let name = origin_filename(&conn, &args).await?;
            params::ui_filename(&name, args.content, args.compression)
        }
    };
    if args.filename.is_none() {
        match compression.filter(|_| args.compression.is_none()) {
            Some(c) => eprintln!("filename: {filename} (compression {})", c.as_str()),
            None => eprintln!("filename: {filename}"),
        }
    }
    let req = DownloadRequest {
        storage: args.storage.clone(),
        url: args.url.clone(),
        filename,
        content: args.content,
        checksum: args.checksum.clone(),
        compression,
        verify_certificates: !args.insecure_origin,
        nodes: args.nodes.clone(),
        connections: args.connections,
    };
    let mut interrupt = follow::interrupt_handler()?;
    let upid = api::download_url(&conn, &req).await?;
    eprintln!("task {upid}");
    let status = follow::follow(&conn, &upid, &mut interrupt, true).await?;
    if is_success(&status) {
        Ok(())
    } else {
        Err(ClientError::TaskFailed { upid, status })
    }
}

/// The name query-url-metadata reports (the origin's Content-Disposition, else the URL's last
/// segment), as the web UI's "Query URL" fills it in. When the daemon can't ask the origin
/// (no HEAD support, no permission), the URL's last segment is used.
async fn origin_filename(conn: &Connection, args: &DownloadArgs) -> Result<String, ClientError> {
    match api::url_metadata(conn, &args.url, !args.insecure_origin).await {
        Ok(meta) => {
            if let Some(name) = meta.filename.filter(|n| !n.is_empty()) {
                return Ok(name);
            }
        }
        // Not reaching the daemon at all would fail the download too: say so now.
        Err(e @ ClientError::Connect { .. }) => return Err(e),
        Err(e) => tracing::debug!("query-url-metadata failed: {e}"),
    }
    params::filename_from_url(&args.url).ok_or_else(|| ClientError::NoFilename(args.url.clone()))
}
