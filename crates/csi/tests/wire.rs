//! Golden wire bytes: the generated messages use the CSI spec v1.12 field numbers and
//! types (a renumbered field would silently break every CO and sidecar).

use prost::Message;
use std::collections::HashMap;
use strongroom_csi::pb::*;

/// The protobuf key byte of field `n` with wire type `wt` (n < 16).
fn key(n: u8, wt: u8) -> u8 {
    (n << 3) | wt
}
const VARINT: u8 = 0;
const LEN: u8 = 2;

fn first_key<M: Message>(m: &M) -> u8 {
    let b = m.encode_to_vec();
    assert!(!b.is_empty(), "empty encoding");
    b[0]
}

fn secrets() -> HashMap<String, String> {
    HashMap::from([("token".to_owned(), "t".to_owned())])
}

#[test]
fn secrets_fields() {
    let k = |m: &dyn Fn() -> Vec<u8>| m()[0];
    assert_eq!(
        k(&|| CreateVolumeRequest {
            secrets: secrets(),
            ..Default::default()
        }
        .encode_to_vec()),
        key(5, LEN)
    );
    assert_eq!(
        k(&|| DeleteVolumeRequest {
            secrets: secrets(),
            ..Default::default()
        }
        .encode_to_vec()),
        key(2, LEN)
    );
    assert_eq!(
        k(&|| NodeStageVolumeRequest {
            secrets: secrets(),
            ..Default::default()
        }
        .encode_to_vec()),
        key(5, LEN)
    );
    assert_eq!(
        k(&|| NodePublishVolumeRequest {
            secrets: secrets(),
            ..Default::default()
        }
        .encode_to_vec()),
        key(7, LEN)
    );
    assert_eq!(
        k(&|| NodeExpandVolumeRequest {
            secrets: secrets(),
            ..Default::default()
        }
        .encode_to_vec()),
        key(6, LEN)
    );
    assert_eq!(
        k(&|| ControllerExpandVolumeRequest {
            secrets: secrets(),
            ..Default::default()
        }
        .encode_to_vec()),
        key(3, LEN)
    );
    assert_eq!(
        k(&|| ValidateVolumeCapabilitiesRequest {
            secrets: secrets(),
            ..Default::default()
        }
        .encode_to_vec()),
        key(5, LEN)
    );
}

#[test]
fn ids_paths_and_sizes() {
    assert_eq!(
        first_key(&CreateVolumeRequest {
            name: "n".into(),
            ..Default::default()
        }),
        key(1, LEN)
    );
    assert_eq!(
        first_key(&CreateVolumeRequest {
            mutable_parameters: HashMap::from([("a".into(), "b".into())]),
            ..Default::default()
        }),
        key(8, LEN)
    );
    assert_eq!(
        first_key(&Volume {
            capacity_bytes: 1,
            ..Default::default()
        }),
        key(1, VARINT)
    );
    assert_eq!(
        first_key(&Volume {
            volume_id: "v".into(),
            ..Default::default()
        }),
        key(2, LEN)
    );
    assert_eq!(
        first_key(&Volume {
            volume_context: secrets(),
            ..Default::default()
        }),
        key(3, LEN)
    );
    assert_eq!(
        first_key(&NodeStageVolumeRequest {
            staging_target_path: "/s".into(),
            ..Default::default()
        }),
        key(3, LEN)
    );
    assert_eq!(
        first_key(&NodeStageVolumeRequest {
            volume_capability: Some(VolumeCapability::default()),
            ..Default::default()
        }),
        key(4, LEN)
    );
    assert_eq!(
        first_key(&NodePublishVolumeRequest {
            target_path: "/t".into(),
            ..Default::default()
        }),
        key(4, LEN)
    );
    assert_eq!(
        first_key(&NodePublishVolumeRequest {
            readonly: true,
            ..Default::default()
        }),
        key(6, VARINT)
    );
    assert_eq!(
        first_key(&NodeGetVolumeStatsRequest {
            volume_path: "/p".into(),
            ..Default::default()
        }),
        key(2, LEN)
    );
    assert_eq!(
        first_key(&NodeExpandVolumeRequest {
            staging_target_path: "/s".into(),
            ..Default::default()
        }),
        key(4, LEN)
    );
    assert_eq!(
        first_key(&CapacityRange {
            limit_bytes: 1,
            ..Default::default()
        }),
        key(2, VARINT)
    );
    assert_eq!(
        first_key(&ListVolumesRequest {
            starting_token: "t".into(),
            ..Default::default()
        }),
        key(2, LEN)
    );
    assert_eq!(
        first_key(&ListVolumesResponse {
            next_token: "t".into(),
            ..Default::default()
        }),
        key(2, LEN)
    );
    assert_eq!(
        first_key(&ControllerExpandVolumeResponse {
            node_expansion_required: true,
            ..Default::default()
        }),
        key(2, VARINT)
    );
    assert_eq!(
        first_key(&NodeGetInfoResponse {
            max_volumes_per_node: 3,
            ..Default::default()
        }),
        key(2, VARINT)
    );
    assert_eq!(
        first_key(&GetCapacityResponse {
            maximum_volume_size: Some(1),
            ..Default::default()
        }),
        key(2, LEN)
    );
}

#[test]
fn capabilities_and_enums() {
    // GetPluginCapabilitiesResponse.capabilities is field 1 (it was 2 in the v0 spec).
    let r = GetPluginCapabilitiesResponse {
        capabilities: vec![PluginCapability::default()],
    };
    assert_eq!(first_key(&r), key(1, LEN));
    let ve = PluginCapability {
        r#type: Some(plugin_capability::Type::VolumeExpansion(
            plugin_capability::VolumeExpansion {
                r#type: plugin_capability::volume_expansion::Type::Online as i32,
            },
        )),
    };
    assert_eq!(ve.encode_to_vec(), vec![key(2, LEN), 2, key(1, VARINT), 1]);
    let block = VolumeCapability {
        access_type: Some(volume_capability::AccessType::Block(
            volume_capability::BlockVolume {},
        )),
        access_mode: None,
    };
    assert_eq!(block.encode_to_vec(), vec![key(1, LEN), 0]);
    let mode = VolumeCapability {
        access_type: None,
        access_mode: Some(volume_capability::AccessMode {
            mode: volume_capability::access_mode::Mode::SingleNodeMultiWriter as i32,
        }),
    };
    assert_eq!(
        mode.encode_to_vec(),
        vec![key(3, LEN), 2, key(1, VARINT), 7]
    );
    use controller_service_capability::rpc::Type as C;
    assert_eq!(
        [
            C::CreateDeleteVolume,
            C::ListVolumes,
            C::GetCapacity,
            C::ExpandVolume,
            C::SingleNodeMultiWriter,
            C::ModifyVolume,
            C::GetSnapshot
        ]
        .map(|t| t as i32),
        [1, 3, 4, 9, 13, 14, 15]
    );
    use node_service_capability::rpc::Type as N;
    assert_eq!(
        [
            N::StageUnstageVolume,
            N::GetVolumeStats,
            N::ExpandVolume,
            N::SingleNodeMultiWriter,
            N::VolumeMountGroup
        ]
        .map(|t| t as i32),
        [1, 2, 3, 5, 6]
    );
    assert_eq!(volume_usage::Unit::Inodes as i32, 2);
    // ProbeResponse.ready is a google.protobuf.BoolValue (a message), not a bool.
    assert_eq!(
        ProbeResponse { ready: Some(false) }.encode_to_vec(),
        vec![key(1, LEN), 0]
    );
}
