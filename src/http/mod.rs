//! actix glue: one catch-all service that hands every request to [`dispatch`], the listener
//! with TLS, and a graceful stop that lets running tasks write their final line.

mod dispatch;
pub mod format;
mod tls;

use std::time::Duration;

use actix_web::{App, HttpServer, web};

use crate::state::AppState;

pub use tls::TlsError;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] TlsError),
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

pub async fn serve(state: AppState) -> Result<(), ServeError> {
    let cfg = state.config().clone();
    let data = web::Data::new(state.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(dispatch::handle))
    })
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
    server.run().await.map_err(ServeError::Run)?;
    tracing::info!("stopping running tasks");
    state.tasks().stop_all(SHUTDOWN_GRACE).await;
    Ok(())
}
