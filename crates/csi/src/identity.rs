//! The Identity service: plugin name and version, capabilities, readiness.

use crate::driver::{Driver, CSI_SPEC_VERSION, DRIVER_NAME};
use crate::pb::plugin_capability::{self, service, volume_expansion};
use crate::pb::*;
use tonic::{Request, Response, Status};

pub struct IdentityService {
    driver: Driver,
}

impl IdentityService {
    pub fn new(driver: Driver) -> Self {
        IdentityService { driver }
    }
}

fn service_cap(t: service::Type) -> PluginCapability {
    PluginCapability {
        r#type: Some(plugin_capability::Type::Service(
            plugin_capability::Service { r#type: t as i32 },
        )),
    }
}

#[tonic::async_trait]
impl identity_server::Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _req: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: DRIVER_NAME.into(),
            vendor_version: env!("CARGO_PKG_VERSION").into(),
            manifest: [("csi-spec".to_owned(), CSI_SPEC_VERSION.to_owned())].into(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _req: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        let mut capabilities = Vec::new();
        if self.driver.cfg.mode.controller() {
            capabilities.push(service_cap(service::Type::ControllerService));
        }
        capabilities.push(PluginCapability {
            r#type: Some(plugin_capability::Type::VolumeExpansion(
                plugin_capability::VolumeExpansion {
                    r#type: volume_expansion::Type::Online as i32,
                },
            )),
        });
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities,
        }))
    }

    async fn probe(&self, _req: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        let ready = self.driver.blocking(None, |b| b.probe()).await?;
        Ok(Response::new(ProbeResponse { ready: Some(ready) }))
    }
}
