//! actix glue: one catch-all service that hands every request to [`dispatch`], the listener
//! with TLS, and a graceful stop that lets running tasks write their final line; beside it the
//! plain-HTTP listener for volumes and boot (`plain`, a server of its own for sendfile).

mod boot;
mod conn_limit;
mod dispatch;
mod files;
pub mod format;
mod local_socket;
mod plain;
mod proxy;
mod tls;
mod upload;

use std::time::Duration;

use actix_web::{App, HttpServer, web};

use crate::state::AppState;

pub use local_socket::{SocketError, SocketPeer};
pub use tls::TlsError;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error("unable to listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Run(std::io::Error),
}

/// How long running tasks get to clean up when the daemon stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves the API until a signal (actix's own handling: SIGTERM is graceful, SIGINT fast) or
/// until `shutdown` resolves, which stops it gracefully.
pub async fn serve(
    state: AppState,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let cfg = state.config().clone();
    let data = web::Data::new(state.clone());
    let conn_limits = conn_limit::ConnLimits::new(cfg.clients);
    let plain_limits = conn_limits.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(dispatch::handle))
    })
    .on_connect(move |io, ext| {
        local_socket::on_connect(io, ext);
        conn_limits.on_connect(io, ext);
    })
    .client_request_timeout(cfg.clients.timeout)
    .shutdown_timeout(5);
    let bind_err = |source| ServeError::Bind {
        addr: cfg.listen,
        source,
    };
    let server = if cfg.tls {
        let (cert, key) = match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(c), Some(k)) => (c.clone(), k.clone()),
            _ => tls::self_signed(&cfg.state_dir, &cfg.node)?,
        };
        server
            .bind_openssl(cfg.listen, tls::acceptor(&cert, &key)?)
            .map_err(bind_err)?
    } else {
        server.bind(cfg.listen).map_err(bind_err)?
    };
    let scheme = if cfg.tls { "https" } else { "http" };
    for addr in server.addrs() {
        tracing::info!("listening on {scheme}://{addr}/api2/json");
    }
    let stop_plain = tokio_util::sync::CancellationToken::new();
    if let Some(addr) = cfg.http_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        tracing::info!("listening on http://{addr}/files/ (public volumes)");
        tokio::spawn(plain::run(
            listener,
            state.clone(),
            plain_limits,
            stop_plain.clone(),
        ));
    }
    let server = server
        .listen_uds(local_socket::bind(&cfg.socket)?)
        .map_err(|source| SocketError::Bind {
            path: cfg.socket.clone(),
            source,
        })?;
    tracing::info!("listening on unix:{}", cfg.socket.display());
    let server = server.run();
    let handle = server.handle();
    let result = tokio::select! {
        r = server => r,
        () = shutdown => {
            handle.stop(true).await;
            Ok(())
        }
    }
    .map_err(ServeError::Run);
    stop_plain.cancel();
    if let Err(e) = std::fs::remove_file(&cfg.socket) {
        tracing::warn!("unable to remove socket '{}': {e}", cfg.socket.display());
    }
    result?;
    tracing::info!("stopping running tasks");
    state.tasks().stop_all(SHUTDOWN_GRACE).await;
    Ok(())
}
