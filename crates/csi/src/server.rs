//! Serving the services on the unix socket until a shutdown signal, then removing it.

use crate::backend::VolumeBackend;
use crate::controller::ControllerService;
use crate::driver::{Driver, DriverConfig};
use crate::endpoint;
use crate::identity::IdentityService;
use crate::node::NodeService;
use crate::pb::{
    controller_server::ControllerServer, identity_server::IdentityServer, node_server::NodeServer,
};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(thiserror::Error, Debug)]
pub enum ServeError {
    #[error("endpoint: {0}")]
    Endpoint(#[from] crate::errors::CsiError),
    #[error("bind {path}: {source}")]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serve Identity (always) and Controller/Node (per `cfg.mode`) on `endpoint` until
/// `shutdown` completes; in-flight calls finish, then the socket file is removed.
pub async fn serve(
    endpoint_str: &str,
    socket_mode: u32,
    cfg: DriverConfig,
    backend: Arc<dyn VolumeBackend>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let path = endpoint::parse(endpoint_str)?;
    let listener = endpoint::bind(&path, socket_mode).map_err(|source| ServeError::Bind {
        path: path.clone(),
        source,
    })?;
    let mode = cfg.mode;
    let driver = Driver::new(cfg, backend);
    tracing::info!(endpoint = %path.display(), ?mode, node_id = %driver.config().node_id, "CSI driver serving");
    let router = tonic::transport::Server::builder()
        .add_service(IdentityServer::new(IdentityService::new(driver.clone())))
        .add_optional_service(
            mode.controller()
                .then(|| ControllerServer::new(ControllerService::new(driver.clone()))),
        )
        .add_optional_service(
            mode.node()
                .then(|| NodeServer::new(NodeService::new(driver.clone()))),
        );
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let r = router
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    let _ = std::fs::remove_file(&path);
    tracing::info!(endpoint = %path.display(), "CSI driver stopped");
    Ok(r?)
}

/// Completes on SIGTERM (kubelet/pod shutdown) or SIGINT.
pub async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
