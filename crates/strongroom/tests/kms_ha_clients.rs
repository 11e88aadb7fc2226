//! Clients of a three-node key-manager cluster (processes on loopback) given several
//! addresses: the vault client, our CLI (`-address a,b,c` and `VAULT_ADDR` with commas) and
//! the volume manager (`strongroom volume --address a,b,c`) move to a node that answers when
//! one is dead, sealed, or the leader is killed mid-run; when none answers the error names
//! every address.

mod kms_ha_common;

use kms_ha_common::{free_port, kv_map, Cluster};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use strongroom_vault_client::{retry, Client, ClientConfig, Error, MountInput};
use strongroom_volume::tenant::{self, TenantLayout};

fn dead_addr() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

fn multi(addrs: &[String], token: &str) -> Client {
    let mut cfg = ClientConfig::with_addresses(addrs.iter().cloned()).with_token(token);
    cfg.timeout = Duration::from_secs(10);
    Client::new(cfg).unwrap()
}

fn strongroom(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strongroom"));
    c.args(args)
        .stdin(Stdio::null())
        .env_remove("VAULT_ADDR")
        .env_remove("BAO_ADDR")
        .env("HOME", std::env::temp_dir());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_vault_client_skips_dead_and_sealed_nodes_and_names_every_address_when_none_answers() {
    let mut c = Cluster::start();
    c.admin()
        .mount_enable("kv", &MountInput::of_type("kv"))
        .unwrap();
    // a dead address first: requests go on to the cluster and stay there
    let mut addrs = vec![dead_addr()];
    addrs.extend(c.addrs());
    let cl = multi(&addrs, &c.token);
    cl.kv1_write("kv", "a", &kv_map("1")).unwrap();
    assert_ne!(cl.address(), addrs[0]);
    assert_eq!(cl.kv1_read("kv", "a").unwrap().unwrap().str("v"), Some("1"));

    // a sealed node first (restarted, not unsealed): skipped
    let follower = (0..3).find(|&i| Some(i) != c.leader()).unwrap();
    c.nodes[follower].kill();
    c.nodes[follower].start();
    let first = c.nodes[follower].addr();
    let mut order = vec![first.clone()];
    order.extend(c.addrs().into_iter().filter(|a| *a != first));
    let cl = multi(&order, &c.token);
    cl.kv1_write("kv", "b", &kv_map("2")).unwrap();
    assert_ne!(cl.address(), order[0], "stayed on the sealed node");
    // only the sealed node: its own answer, classified as sealed
    let sealed = multi(&order[..1], &c.token)
        .kv1_read("kv", "b")
        .unwrap_err();
    assert!(matches!(sealed, Error::Sealed(_)), "{sealed:?}");
    c.unseal(follower);

    // none answers: one error naming every address, retryable
    let dead = [dead_addr(), dead_addr()];
    let e = multi(&dead, &c.token).kv1_read("kv", "a").unwrap_err();
    let msg = e.to_string();
    assert!(e.is_retryable(), "{e:?}");
    for a in &dead {
        assert!(msg.contains(a.as_str()), "{a} not named in: {msg}");
    }
}

#[test]
fn the_leader_killed_mid_run_clients_follow_with_bounded_retries() {
    let mut c = Cluster::start();
    let admin = c.admin();
    admin
        .mount_enable("kv", &MountInput::of_type("kv"))
        .unwrap();
    let layout = TenantLayout {
        transit_mount: "transit".into(),
        kv2_mount: None,
        kv1_mount: None,
    };
    let policy = tenant::setup_tenant(&admin, "t1", &layout).unwrap();
    let tenant_token = tenant::create_token(&admin, &[policy.as_str()], "1h").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("t1.token");
    std::fs::write(&token_file, tenant_token.expose()).unwrap();
    let root = dir.path().join("volumes");
    let leader = c.wait_leader();
    // the leader first in every list, so that its death is what the clients meet
    let first = c.nodes[leader].addr();
    let mut addrs = vec![first.clone()];
    addrs.extend(c.addrs().into_iter().filter(|a| *a != first));
    let list = format!("{},{}", dead_addr(), addrs.join(","));
    let cl = multi(&addrs, &c.token);
    cl.kv1_write("kv", "before", &kv_map("x")).unwrap();
    let volume = |id: &str| {
        strongroom(
            &[
                "volume",
                "--root",
                root.to_str().unwrap(),
                "--address",
                &list,
                "--cluster-id",
                "ha",
                "create",
                id,
                "--tenant",
                "t1",
                "--size",
                "16M",
                "--token-file",
                token_file.to_str().unwrap(),
            ],
            &[],
        )
    };
    let o = volume("v1");
    assert!(o.status.success(), "volume create: {}", text(&o));

    c.nodes[leader].kill();
    let killed = Instant::now();
    // the vault client: bounded retries (the documented 6 from 200 ms) ride out the election
    let wrote = retry(6, Duration::from_millis(200), || {
        cl.kv1_write("kv", "after", &kv_map("y"))
    });
    wrote.unwrap();
    let failover_ms = killed.elapsed().as_millis();
    assert_ne!(cl.address(), addrs[0]);
    // our CLI: -address with a list, and VAULT_ADDR with commas
    let env = [("VAULT_TOKEN", c.token.as_str())];
    let cli = |args: &[&str], env: &[(&str, &str)]| {
        let mut last = None;
        for _ in 0..6 {
            let o = strongroom(args, env);
            if o.status.success() {
                return o;
            }
            last = Some(o);
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("{args:?}: {}", text(&last.unwrap()));
    };
    let addr_flag = format!("-address={list}");
    let o = cli(&["kv", "get", &addr_flag, "-field=v", "kv/after"], &env);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "y");
    let env2 = [("VAULT_TOKEN", c.token.as_str()), ("VAULT_ADDR", &list)];
    cli(&["kv", "put", "kv/cli", "v=z"], &env2);
    // the volume manager, through the CLI, with the leader gone
    let mut created = None;
    for _ in 0..6 {
        let o = volume("v2");
        if o.status.success() {
            created = Some(o);
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(created.is_some(), "volume create after the kill failed");
    // nothing answers: exit 2 and every address named
    let dead = format!("{},{}", dead_addr(), dead_addr());
    let o = strongroom(
        &["kv", "get", &format!("-address={dead}"), "kv/after"],
        &env,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    for a in dead.split(',') {
        assert!(err.contains(a), "{a} not in {err}");
    }
    eprintln!("kms ha clients: kv write answered {failover_ms} ms after the kill");
}
