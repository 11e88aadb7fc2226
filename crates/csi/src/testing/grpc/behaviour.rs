//! Concurrency (aborted vs serialised calls), secrets kept out of logs, controller-only mode.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_on_one_volume_get_aborted() {
    let backend = MemBackend::default().with_tenant(TOKEN_A, "tenant-a");
    *backend.delay.lock().unwrap() = Duration::from_millis(300);
    let h = Harness::start(backend, Duration::ZERO).await;
    let mut c1 = h.ctl();
    let mut c2 = h.ctl();
    let (a, b) = tokio::join!(c1.create_volume(create_req("pvc-c", GIB)), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        c2.create_volume(create_req("pvc-c", GIB)).await
    });
    // Exactly one call wins; the other is ABORTED (whichever reached the lock second).
    let codes = [a.map(|_| Code::Ok), b.map(|_| Code::Ok)].map(|r| r.unwrap_or_else(|s| s.code()));
    let mut sorted = codes;
    sorted.sort_by_key(|c| *c as i32);
    assert_eq!(sorted, [Code::Ok, Code::Aborted], "{codes:?}");
    // Other volumes are not blocked, and the first volume is free again afterwards.
    h.ctl()
        .create_volume(create_req("pvc-d", GIB))
        .await
        .unwrap();
    h.ctl()
        .create_volume(create_req("pvc-c", GIB))
        .await
        .unwrap();
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_are_serialised_within_patience() {
    let backend = MemBackend::default().with_tenant(TOKEN_A, "tenant-a");
    *backend.delay.lock().unwrap() = Duration::from_millis(100);
    let h = Harness::start(backend, Duration::from_secs(5)).await;
    let mut c1 = h.ctl();
    let mut c2 = h.ctl();
    let (a, b) = tokio::join!(
        c1.create_volume(create_req("pvc-c", GIB)),
        c2.create_volume(create_req("pvc-c", GIB))
    );
    assert_eq!(a.unwrap().into_inner(), b.unwrap().into_inner());
    h.stop().await;
}

/// A `Write` sink for the log capture.
#[derive(Clone, Default)]
struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn tokens_never_reach_logs_or_error_messages() {
    let sink = Sink::default();
    let w = sink.clone();
    let sub = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || w.clone())
        .finish();
    let _g = tracing::subscriber::set_default(sub);

    let h = Harness::default().await;
    let mut c = h.ctl();
    let mut n = h.node();
    c.create_volume(create_req("pvc-log", GIB)).await.unwrap();
    let mut msgs = Vec::new();
    let mut bad = create_req("pvc-log", GIB);
    bad.secrets = secrets(TOKEN_B);
    msgs.push(status(c.create_volume(bad).await).message().to_owned());
    let mut weird = create_req("pvc-log2", GIB);
    weird.secrets = secrets("s.has a space");
    msgs.push(status(c.create_volume(weird).await).message().to_owned());
    let staging = h.path("staging");
    n.node_stage_volume(NodeStageVolumeRequest {
        volume_id: "pvc-log".into(),
        staging_target_path: staging.clone(),
        volume_capability: Some(mount_cap(PbMode::SingleNodeWriter)),
        secrets: secrets(TOKEN_A),
        ..Default::default()
    })
    .await
    .unwrap();
    msgs.push(
        status(
            n.node_stage_volume(NodeStageVolumeRequest {
                volume_id: "pvc-log".into(),
                staging_target_path: staging,
                volume_capability: Some(mount_cap(PbMode::SingleNodeWriter)),
                secrets: secrets(TOKEN_B),
                ..Default::default()
            })
            .await,
        )
        .message()
        .to_owned(),
    );
    c.delete_volume(DeleteVolumeRequest {
        volume_id: "pvc-log".into(),
        secrets: secrets(TOKEN_A),
    })
    .await
    .unwrap();
    h.stop().await;

    let logs = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("CreateVolume") && logs.contains("NodeStageVolume"),
        "captured: {logs}"
    );
    for secret in [
        TOKEN_A,
        TOKEN_B,
        "has a space",
        "tenant-a-secret",
        "tenant-b-secret",
    ] {
        assert!(!logs.contains(secret), "token in logs: {logs}");
        for m in &msgs {
            assert!(!m.contains(secret), "token in error message: {m}");
        }
    }
}

#[tokio::test]
async fn controller_only_mode_serves_no_node_service() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("c.sock");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let ep = format!("unix:{}", sock.display());
    let b: Arc<dyn crate::VolumeBackend> = Arc::new(MemBackend::default());
    let task = tokio::spawn(async move {
        crate::server::serve(
            &ep,
            0o660,
            DriverConfig::new("n", Mode::Controller),
            b,
            async {
                let _ = rx.await;
            },
        )
        .await
    });
    while !sock.exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o660
    );
    let p = sock.clone();
    let ch = Endpoint::try_from("http://[::]:1")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = p.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(p).await?,
                ))
            }
        }))
        .await
        .unwrap();
    let r = NodeClient::new(ch.clone())
        .node_get_info(NodeGetInfoRequest {})
        .await;
    assert_eq!(code(r), Code::Unimplemented);
    ControllerClient::new(ch)
        .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
        .await
        .unwrap();
    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert!(!sock.exists());
}
