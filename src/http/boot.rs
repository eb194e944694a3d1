//! `/boot/ipxe` and `/boot/config`: what a machine asks for when it boots over the network.
//! The script names the host's image by a URL on the very scheme, host and port the script
//! was asked for through, so it works behind NAT, port forwards and proxies; a machine that has
//! nothing to boot is told to `exit` (iPXE then boots from disk). An installer finds its config
//! by its source address, or by `mac=` where a NAT hides that address. Served on both listeners
//! without credentials, as installers and iPXE cannot log in.

use actix_web::http::header;
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
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

pub async fn serve(req: &HttpRequest, state: &AppState, plain: bool) -> HttpResponse {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            405,
            "text/plain; charset=utf-8",
            format!("method '{}' not allowed\n", req.method()),
        );
    }
    let path = book::path(state.config());
    let loaded = tokio::task::spawn_blocking(move || book::load(&path)).await;
    let book = match loaded {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return text(500, "text/plain; charset=utf-8", format!("{e}\n")),
        Err(e) => return text(500, "text/plain; charset=utf-8", format!("{e}\n")),
    };
    let mac = query(req, "mac");
    match req.path() {
        "/boot/ipxe" => script(req, state, &book, mac, plain).await,
        "/boot/config" => config(req, &book, mac, None),
        p => match p.strip_prefix("/boot/config/") {
            Some(file) if !file.is_empty() => {
                let file = percent_encoding::percent_decode_str(file).decode_utf8_lossy();
                config(req, &book, mac, Some(&file))
            }
            _ => text(404, "text/plain; charset=utf-8", "not found\n".into()),
        },
    }
}

fn query(req: &HttpRequest, key: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string())
        .ok()?
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

async fn script(
    req: &HttpRequest,
    state: &AppState,
    book: &Book,
    mac: Option<String>,
    plain: bool,
) -> HttpResponse {
    let base = format!(
        "{}://{}",
        if plain { "http" } else { "https" },
        req.connection_info().host()
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

fn config(req: &HttpRequest, book: &Book, mac: Option<String>, file: Option<&str>) -> HttpResponse {
    let not_found = |why: String| text(404, "text/plain; charset=utf-8", format!("{why}\n"));
    let found: Option<(&String, &Host)> = match &mac {
        Some(m) => ipxe::normalize_mac(m).and_then(|m| book.host_by_mac(&m)),
        None => req.peer_addr().and_then(|a| book.host_by_ip(a.ip())),
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
        Some(c) => text(200, config.content_type(), c.clone()),
        None => not_found(format!(
            "boot config '{config_name}' has no file '{}'",
            file.unwrap_or_default()
        )),
    }
}

fn ipxe_reply(script: String) -> HttpResponse {
    text(200, "text/plain; charset=utf-8", script)
}

fn text(status: u16, content_type: &'static str, body: String) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .insert_header((header::CONTENT_TYPE, content_type))
        .body(body)
}
