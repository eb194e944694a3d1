//! `/boot/ipxe` and `/boot/config`: what a machine asks for when it boots over the network.
//! The script names the host's image by a URL on the very scheme, host and port the script
//! was asked for through, so it works behind NAT, port forwards and proxies; a machine that has
//! nothing to boot is told to `exit` (iPXE then boots from disk). An installer finds its config
//! by its source address, or by `mac=` where a NAT hides that address. Served on both listeners
//! without credentials, as installers and iPXE cannot log in.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use std::net::IpAddr;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::boot::book::{self, Book, Host};
use crate::boot::ipxe;
use crate::catalog::{Lookup, VolumeAccess};
use crate::state::AppState;

/// A path segment as a URL carries it.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A request to `/boot/...`, whichever listener it came through.
pub struct BootRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    /// The host (and port) the client asked for: the script's URLs use it.
    pub host: &'a str,
    pub peer: Option<IpAddr>,
    /// Came in on the plain-HTTP listener: the script's URLs are `http`.
    pub plain: bool,
}

/// An answer: the status, its content type and the text.
pub struct Text {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

/// Serves `req` on the API's listener.
pub async fn serve(req: &HttpRequest, state: &AppState) -> HttpResponse {
    let info = req.connection_info().clone();
    let boot = BootRequest {
        method: req.method().as_str(),
        path: req.path(),
        query: req.query_string(),
        host: info.host(),
        peer: req.peer_addr().map(|a| a.ip()),
        plain: false,
    };
    let t = answer(&boot, state).await;
    HttpResponse::build(StatusCode::from_u16(t.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .insert_header((header::CONTENT_TYPE, t.content_type))
        .body(t.body)
}

pub async fn answer(req: &BootRequest<'_>, state: &AppState) -> Text {
    if req.method != "GET" && req.method != "HEAD" {
        return plain(405, format!("method '{}' not allowed\n", req.method));
    }
    let path = book::path(state.config());
    let loaded = tokio::task::spawn_blocking(move || book::load(&path)).await;
    let book = match loaded {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return plain(500, format!("{e}\n")),
        Err(e) => return plain(500, format!("{e}\n")),
    };
    let mac = query(req.query, "mac");
    match req.path {
        "/boot/ipxe" => script(req, state, &book, mac).await,
        "/boot/config" => config(req, &book, mac, None),
        p => match p.strip_prefix("/boot/config/") {
            Some(file) if !file.is_empty() => {
                let file = percent_encoding::percent_decode_str(file).decode_utf8_lossy();
                config(req, &book, mac, Some(&file))
            }
            _ => plain(404, "not found\n".into()),
        },
    }
}

fn query(query: &str, key: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

async fn script(req: &BootRequest<'_>, state: &AppState, book: &Book, mac: Option<String>) -> Text {
    let base = format!(
        "{}://{}",
        if req.plain { "http" } else { "https" },
        req.host
    );
    let Some(mac) = mac else {
        return ipxe_reply(ipxe::chain_by_mac(&base));
    };
    let Some(mac) = ipxe::normalize_mac(&mac) else {
        return ipxe_reply(ipxe::exit(&format!("'{mac}' is not a MAC address")));
    };
    let Some((name, host)) = book.host_by_mac(&mac) else {
        return ipxe_reply(ipxe::exit(&format!("no host has MAC address {mac}")));
    };
    let Some(volid) = host.volume() else {
        return ipxe_reply(ipxe::exit(&format!("host '{name}' boots from its disk")));
    };
    match image_url(state, volid, &base).await {
        Ok(url) => ipxe_reply(ipxe::sanboot(volid, name, &mac, &url)),
        Err(why) => ipxe_reply(ipxe::exit(&why)),
    }
}

/// Where the image is served, if it can be booted without credentials.
async fn image_url(state: &AppState, volid: &str, base: &str) -> Result<String, String> {
    let (sid, volname) = crate::pve::ids::parse_volume_id(volid)
        .ok_or_else(|| format!("'{volid}' is not a volume ID"))?;
    let cfg = state.storage_config().map_err(|e| e.message)?;
    let file = cfg
        .get(&sid)
        .and_then(|s| s.volume_path(&volname).ok())
        .ok_or_else(|| format!("volume '{volid}' does not exist"))?;
    let lookup = tokio::task::spawn_blocking(move || crate::catalog::store::load(&file))
        .await
        .map_err(|e| e.to_string())?;
    match lookup {
        Ok(Lookup::Fresh(r)) if r.access == VolumeAccess::Public && !r.failed() => {}
        Ok(Lookup::Fresh(r)) if r.failed() => {
            return Err(format!("image '{volid}' failed its verification"));
        }
        Ok(Lookup::Fresh(_)) => {
            return Err(format!(
                "image '{volid}' is private: make it public to boot it"
            ));
        }
        _ => return Err(format!("image '{volid}' has no catalog record")),
    }
    let path: Vec<String> = volname
        .split('/')
        .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
        .collect();
    Ok(format!(
        "{base}/files/{}/{}",
        utf8_percent_encode(&sid, SEGMENT),
        path.join("/")
    ))
}

fn config(req: &BootRequest<'_>, book: &Book, mac: Option<String>, file: Option<&str>) -> Text {
    let not_found = |why: String| plain(404, format!("{why}\n"));
    let found: Option<(&String, &Host)> = match &mac {
        Some(m) => ipxe::normalize_mac(m).and_then(|m| book.host_by_mac(&m)),
        None => req.peer.and_then(|ip| book.host_by_ip(ip)),
    };
    let Some((name, host)) = found else {
        return not_found(match mac {
            Some(m) => format!("no host has MAC address {m}"),
            None => "no host has this address".into(),
        });
    };
    let Some(config_name) = &host.config else {
        return not_found(format!("host '{name}' has no boot config"));
    };
    let Some(config) = book.configs.get(config_name) else {
        return not_found(format!("boot config '{config_name}' does not exist"));
    };
    let content = match file {
        Some(f) => config.files.get(f),
        None if config.files.len() == 1 => config.files.values().next(),
        None => {
            let names: Vec<&str> = config.files.keys().map(String::as_str).collect();
            return not_found(format!(
                "boot config '{config_name}' has {} files ({}): ask for /boot/config/<file>",
                names.len(),
                names.join(", ")
            ));
        }
    };
    match content {
        Some(c) => Text {
            status: 200,
            content_type: config.content_type(),
            body: c.clone(),
        },
        None => not_found(format!(
            "boot config '{config_name}' has no file '{}'",
            file.unwrap_or_default()
        )),
    }
}

fn ipxe_reply(script: String) -> Text {
    plain(200, script)
}

fn plain(status: u16, body: String) -> Text {
    Text {
        status,
        content_type: "text/plain; charset=utf-8",
        body,
    }
}
