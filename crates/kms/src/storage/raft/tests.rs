//! Three real raft members in one process, on loopback sockets, with their redb files in
//! temporary directories: replication, failover, restart, snapshots, membership, mutual TLS.

use super::network::{read_frame, write_frame, Reply, Rpc};
use super::tls::{ClusterCerts, ClusterTls};
use super::*;
use crate::storage::durability;
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn fast() -> Timing {
    Timing {
        heartbeat_ms: 50,
        election_min_ms: 300,
        election_max_ms: 600,
        snapshot_every: 10_000,
    }
}

async fn start_at(
    dir: &Path,
    name: &str,
    addr: &str,
    tls: Option<Arc<ClusterTls>>,
    timing: Timing,
) -> Arc<RaftStorage> {
    // an in-process restart: openraft's workers of the stopped node may hold the files a
    // few milliseconds longer (a real restart is a new process)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let bound = listener.local_addr().unwrap().to_string();
        let opts = RaftOptions {
            dir: dir.join(name),
            name: name.into(),
            cluster_addr: bound.clone(),
            api_addr: format!("http://{bound}"),
            insecure_plain_transport: tls.is_none(),
            tls: tls.clone(),
            timing: timing.clone(),
        };
        match RaftStorage::start(opts, listener).await {
            Ok(s) => return s,
            Err(e) if tokio::time::Instant::now() < deadline => {
                assert!(e.to_string().contains("already open"), "{e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

async fn start(
    dir: &Path,
    name: &str,
    tls: Option<Arc<ClusterTls>>,
    t: Timing,
) -> Arc<RaftStorage> {
    start_at(dir, name, "127.0.0.1:0", tls, t).await
}

/// A write as a request makes it: deferred in a durability scope, then awaited.
async fn put(s: &RaftStorage, k: &str, v: &[u8]) -> Result<(), StorageError> {
    let (r, ticket) = durability::scope(|| s.put(k, v.to_vec()));
    r?;
    s.wait_durable(ticket.max(s.watermark())).await
}

async fn wait_applied(nodes: &[&Arc<RaftStorage>], index: u64) {
    for n in nodes {
        n.raft()
            .wait(Some(WAIT))
            .applied_index_at_least(Some(index), "catch up")
            .await
            .unwrap();
    }
}

async fn three(dir: &Path, tls: Option<Arc<ClusterTls>>, t: Timing) -> Vec<Arc<RaftStorage>> {
    let n1 = start(dir, "n1", tls.clone(), t.clone()).await;
    put(&n1, "core/first", b"1").await.unwrap();
    assert!(
        n1.is_leader(),
        "the first write bootstraps a one-node cluster"
    );
    let n2 = start(dir, "n2", tls.clone(), t.clone()).await;
    let n3 = start(dir, "n3", tls, t).await;
    n1.add_member(n2.node().clone()).await.unwrap();
    n1.add_member(n3.node().clone()).await.unwrap();
    vec![n1, n2, n3]
}

async fn new_leader(nodes: &[&Arc<RaftStorage>]) -> Arc<RaftStorage> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(l) = nodes.iter().find(|n| n.is_leader()) {
            return (*l).clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_replicate_fail_over_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = three(dir.path(), None, fast()).await;
    let (n1, n2, n3) = (&nodes[0], &nodes[1], &nodes[2]);
    let peers = n1.peers();
    assert_eq!(peers.len(), 3);
    assert!(peers.iter().all(|p| p.voter));
    assert_eq!(peers.iter().filter(|p| p.leader).count(), 1);
    assert_eq!(peers[0].node_id, "n1");
    for i in 0..50 {
        put(n1, &format!("kv/{i:02}"), &[i]).await.unwrap();
    }
    wait_applied(&[n2, n3], n1.applied_index()).await;
    for n in [n2, n3] {
        assert_eq!(n.list("kv/").unwrap().len(), 50);
        assert_eq!(n.get("kv/49").unwrap(), Some(vec![49]));
        assert_eq!(n.get("core/first").unwrap(), Some(b"1".to_vec()));
    }
    // a standby refuses writes instead of diverging
    let e = put(n2, "kv/x", b"x").await.unwrap_err();
    assert!(e.to_string().contains("standby"), "{e}");

    // the leader dies; a survivor is elected and every acknowledged write is there
    let n1_addr = n1.node().cluster_addr.clone();
    n1.shutdown().await;
    let leader = new_leader(&[n2, n3]).await;
    for i in 50..60 {
        put(&leader, &format!("kv/{i:02}"), &[i]).await.unwrap();
    }
    assert_eq!(leader.list("kv/").unwrap().len(), 60);
    leader.read_barrier().await.unwrap();

    // the old leader comes back from its files and catches up as a follower
    drop(nodes);
    let n1 = start_at(dir.path(), "n1", &n1_addr, None, fast()).await;
    wait_applied(&[&n1], leader.applied_index()).await;
    assert_eq!(n1.list("kv/").unwrap().len(), 60);
    assert_eq!(n1.get("kv/59").unwrap(), Some(vec![59]));
    assert!(!n1.is_leader());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshots_compact_the_log_and_seed_new_members() {
    let dir = tempfile::tempdir().unwrap();
    let t = Timing {
        snapshot_every: 20,
        ..fast()
    };
    let n1 = start(dir.path(), "n1", None, t.clone()).await;
    for i in 0..100u8 {
        put(&n1, &format!("kv/{i:03}"), &[i]).await.unwrap();
    }
    put(&n1, "kv/000", b"overwritten").await.unwrap();
    n1.delete("kv/001").unwrap();
    n1.raft()
        .wait(Some(WAIT))
        .metrics(
            |m| m.purged.is_some() && m.snapshot.is_some(),
            "snapshot + purge",
        )
        .await
        .unwrap();
    // a member added after the purge can only be seeded by the snapshot
    let n2 = start(dir.path(), "n2", None, t.clone()).await;
    n1.add_member(n2.node().clone()).await.unwrap();
    wait_applied(&[&n2], n1.applied_index()).await;
    assert_eq!(n2.list("kv/").unwrap().len(), 99);
    assert_eq!(n2.get("kv/000").unwrap(), Some(b"overwritten".to_vec()));
    assert_eq!(n2.get("kv/001").unwrap(), None);
    assert_eq!(n2.get("kv/099").unwrap(), Some(vec![99]));
    assert_eq!(n2.peers().len(), 2);

    // removing a member shrinks the cluster; the leader keeps serving alone
    n1.remove_member("n2").await.unwrap();
    assert_eq!(n1.peers().len(), 1);
    put(&n1, "kv/after", b"1").await.unwrap();
    assert!(n1.remove_member("nobody").await.is_err());

    // a restart reopens the state machine and the snapshot from disk
    let addr = n1.node().cluster_addr.clone();
    let applied = n1.applied_index();
    n1.shutdown().await;
    drop(n1);
    let n1 = start_at(dir.path(), "n1", &addr, None, t).await;
    wait_applied(&[&n1], applied).await;
    assert_eq!(n1.get("kv/after").unwrap(), Some(b"1".to_vec()));
    assert_eq!(n1.list("kv/").unwrap().len(), 100);
    new_leader(&[&n1]).await;
    put(&n1, "kv/again", b"2").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_talk_mutual_tls_and_strangers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let certs = ClusterCerts::generate().unwrap();
    let tls = Arc::new(ClusterTls::new(&certs).unwrap());
    let nodes = three(dir.path(), Some(tls), fast()).await;
    put(&nodes[0], "kv/tls", b"ok").await.unwrap();
    wait_applied(&[&nodes[1], &nodes[2]], nodes[0].applied_index()).await;
    assert_eq!(nodes[2].get("kv/tls").unwrap(), Some(b"ok".to_vec()));

    // a node with another cluster's certificates cannot even finish the handshake
    let addr = nodes[0].node().cluster_addr.clone();
    let stranger = ClusterTls::new(&ClusterCerts::generate().unwrap()).unwrap();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let refused = match stranger.connect(tcp).await {
        Err(_) => true,
        // TLS 1.3: the client may finish first; the server's refusal arrives on first use
        Ok(mut s) => {
            let ping = Rpc::Vote(openraft::raft::VoteRequest::new(Default::default(), None));
            write_frame(&mut s, &ping).await.is_err() || read_frame::<Reply>(&mut s).await.is_err()
        }
    };
    assert!(refused, "a stranger's connection was served");
    // and plain TCP gets no answer either (a TLS alert is not a reply)
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let ping = Rpc::Vote(openraft::raft::VoteRequest::new(Default::default(), None));
    let _ = write_frame(&mut tcp, &ping).await;
    assert!(read_frame::<Reply>(&mut tcp).await.is_err());
    // the cluster still works
    put(&nodes[0], "kv/tls2", b"ok").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_cut_off_from_its_quorum_stops_serving_reads_when_its_lease_ends() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = three(dir.path(), None, fast()).await;
    let n1 = &nodes[0];
    n1.read_barrier().await.unwrap();
    nodes[1].shutdown().await;
    nodes[2].shutdown().await;
    // the lease (half the minimum election timeout) runs out; a confirmation needs a quorum
    tokio::time::sleep(Duration::from_millis(fast().election_min_ms)).await;
    for _ in 0..3 {
        let r = tokio::time::timeout(WAIT, n1.read_barrier()).await;
        let r = r.expect("a read barrier without a quorum hangs");
        assert!(r.is_err(), "reads confirmed without a quorum");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_leader_or_a_node_in_no_cluster_passes_the_read_barrier() {
    let dir = tempfile::tempdir().unwrap();
    // a node in no cluster yet serves its own (only) copy
    let alone = start(dir.path(), "alone", None, fast()).await;
    alone.read_barrier().await.unwrap();
    let nodes = three(dir.path(), None, fast()).await;
    nodes[0].read_barrier().await.unwrap();
    wait_applied(&[&nodes[1], &nodes[2]], nodes[0].applied_index()).await;
    // a follower's copy may lag behind an acknowledged change: it serves nothing from it,
    // and says so with a typed refusal the forwarding node recognises
    for f in &nodes[1..] {
        let e = f.read_barrier().await.unwrap_err();
        assert!(matches!(e, StorageError::NotActive), "{e}");
    }
}
