//! The Helm chart (deploy/helm/strongroom) rendered by the real `helm` and every object
//! validated strictly against the Kubernetes schemas by `kubernetes-validate` (offline), over
//! the values that matter; then the key manager's StatefulSet checked as a three-member raft
//! cluster: stable member names, retry_join to each of them, the pods' own addresses from the
//! environment, a PodDisruptionBudget and anti-affinity.
//!
//! `helm` comes from `$STRONGROOM_HELM` or PATH, `kubernetes-validate` from PATH; both are
//! installed by scripts/test.sh. Without them the tests say so and pass, unless
//! `STRONGROOM_HELM_REQUIRED=1` (set by scripts/test.sh), which makes them fail instead.

use serde_yaml::Value;
use std::path::PathBuf;
use std::process::Command;
use strongroom_kms::config::{ServerConfig, StorageConfig};

const NAMESPACE: &str = "storage";

/// Value sets every render is checked with: defaults, a single member, the article's
/// example, the soft/OnDelete variants, extra KMS secrets, the chart without its KMS, and the
/// node plugin without a holder host.
const VALUE_SETS: &[&[&str]] = &[
    &[],
    &["kms.replicas=1"],
    &["example.enabled=true"],
    &[
        "kms.antiAffinity=soft",
        "kms.updateStrategy=OnDelete",
        "kms.replicas=5",
    ],
    &["kmsSecrets[0]=kms-ca", "kmsSecrets[1]=kms-client"],
    &["kms.enabled=false", "storageClass.create=false"],
    &["node.holderHost.enabled=false"],
];

/// Kubernetes versions the objects must be valid for: the oldest we support and the newest
/// `kubernetes-validate` knows (its default).
const KUBE_VERSIONS: &[Option<&str>] = &[Some("1.31.0"), None];

fn chart_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/helm/strongroom")
}

fn tools() -> Option<(PathBuf, PathBuf)> {
    let helm = std::env::var_os("STRONGROOM_HELM")
        .map(PathBuf::from)
        .or_else(|| which("helm"));
    let validate = which("kubernetes-validate");
    match (helm, validate) {
        (Some(h), Some(v)) => Some((h, v)),
        (h, v) => {
            let msg = format!(
                "chart tests need helm ({}) and kubernetes-validate ({}); scripts/test.sh installs both",
                if h.is_some() { "found" } else { "missing" },
                if v.is_some() { "found" } else { "missing" },
            );
            assert!(
                std::env::var("STRONGROOM_HELM_REQUIRED").as_deref() != Ok("1"),
                "STRONGROOM_HELM_REQUIRED=1: {msg}"
            );
            eprintln!("SKIPPED: {msg}");
            None
        }
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn set_args(set: &[&str]) -> Vec<String> {
    set.iter()
        .flat_map(|s| ["--set".into(), s.to_string()])
        .collect()
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("run tool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn template(helm: &PathBuf, set: &[&str]) -> String {
    let (ok, text) = run(Command::new(helm)
        .args(["template", "rel"])
        .arg(chart_dir())
        .args(["--namespace", NAMESPACE])
        .args(set_args(set)));
    assert!(ok, "helm template {set:?}: {text}");
    text
}

fn docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

fn validate(validator: &PathBuf, file: &std::path::Path) -> (bool, String) {
    let mut results = vec![];
    for v in KUBE_VERSIONS {
        let mut cmd = Command::new(validator);
        cmd.args(["--strict", "--quiet"]);
        if let Some(v) = v {
            cmd.args(["--kubernetes-version", v]);
        }
        results.push(run(cmd.arg(file)));
    }
    let ok = results.iter().all(|(ok, _)| *ok);
    (ok, results.into_iter().map(|(_, t)| t).collect())
}

#[test]
fn chart_lints_and_every_object_validates_strictly() {
    let Some((helm, validator)) = tools() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (i, set) in VALUE_SETS.iter().enumerate() {
        let (ok, text) = run(Command::new(&helm)
            .arg("lint")
            .arg(chart_dir())
            .args(["--namespace", NAMESPACE])
            .args(set_args(set)));
        assert!(
            ok && text.contains("0 chart(s) failed"),
            "helm lint {set:?}: {text}"
        );
        let rendered = template(&helm, set);
        assert!(docs(&rendered).len() >= 8, "{set:?}: too few objects");
        let file = dir.path().join(format!("render-{i}.yaml"));
        std::fs::write(&file, &rendered).unwrap();
        let (ok, text) = validate(&validator, &file);
        assert!(ok, "{set:?} does not validate:\n{text}");
    }
}

/// The validator is strict: one unknown field in a rendered object fails it.
#[test]
fn the_validator_rejects_an_unknown_field() {
    let Some((helm, validator)) = tools() else {
        return;
    };
    let rendered = template(&helm, &[]);
    let broken = rendered.replacen(
        "podManagementPolicy: Parallel",
        "podManagementPolicy: Parallel\n  replicaz: 3",
        1,
    );
    assert_ne!(
        broken, rendered,
        "the StatefulSet renders podManagementPolicy"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, broken).unwrap();
    let (ok, text) = validate(&validator, &file);
    assert!(!ok && text.contains("replicaz"), "{text}");
}

fn container_env(sts: &Value) -> Vec<(String, String)> {
    sts["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?.into(), e["value"].as_str()?.into())))
        .collect()
}

/// `$(POD_NAME)` as the kubelet expands it, and our config with the pod's environment.
fn member_config(hcl: &str, env: &[(String, String)], pod: &str) -> ServerConfig {
    let mut cfg = ServerConfig::parse(hcl).expect("the chart's server.hcl parses");
    cfg.apply_env(|k| {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.replace("$(POD_NAME)", pod))
    });
    cfg
}

#[test]
fn kms_is_a_three_member_raft_cluster_joined_by_retry_join() {
    let Some((helm, _)) = tools() else {
        return;
    };
    let d = docs(&template(&helm, &[]));
    let sts = find(&d, "StatefulSet", "strongroom-kms").expect("the KMS StatefulSet");
    let spec = &sts["spec"];
    assert_eq!(spec["replicas"], 3);
    assert_eq!(spec["podManagementPolicy"], "Parallel");
    let internal = spec["serviceName"].as_str().unwrap();
    let svc = find(&d, "Service", internal).expect("the members' headless Service");
    assert_eq!(svc["spec"]["clusterIP"], "None");
    assert_eq!(svc["spec"]["publishNotReadyAddresses"], true);

    // Anti-affinity: one member per node.
    let pods = &spec["template"];
    let term = &pods["spec"]["affinity"]["podAntiAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(
        term["labelSelector"]["matchLabels"],
        spec["selector"]["matchLabels"]
    );
    // The PDB keeps a quorum through voluntary disruptions, over the same pods.
    let pdb = find(&d, "PodDisruptionBudget", "strongroom-kms").expect("a PDB");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(pdb["spec"]["selector"], spec["selector"]);

    let cm = find(&d, "ConfigMap", "strongroom-kms-config").unwrap();
    let hcl = cm["data"]["server.hcl"].as_str().unwrap();
    let env = container_env(sts);
    let cluster_port = pods["spec"]["containers"][0]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "cluster")
        .map(|p| p["containerPort"].as_u64().unwrap())
        .expect("a cluster port");
    let mut api_addrs = vec![];
    for i in 0..3 {
        let pod = format!("strongroom-kms-{i}");
        let cfg = member_config(hcl, &env, &pod);
        let StorageConfig::Raft { node_id, .. } = &cfg.storage else {
            panic!("the chart's KMS storage is not raft: {:?}", cfg.storage);
        };
        assert_eq!(node_id.as_deref(), Some(pod.as_str()));
        let fqdn = format!("{pod}.{internal}.{NAMESPACE}.svc.cluster.local");
        assert_eq!(cfg.api_addr, Some(format!("http://{fqdn}:8200")));
        assert_eq!(
            cfg.cluster_addr,
            Some(format!("https://{fqdn}:{cluster_port}"))
        );
        api_addrs.push(cfg.api_addr.unwrap());
    }
    // Every member's retry_join names every member's API address.
    for addr in &api_addrs {
        assert!(
            hcl.contains(&format!("leader_api_addr = \"{addr}\"")),
            "{addr} not in retry_join:\n{hcl}"
        );
    }
}

#[test]
fn a_single_member_has_no_disruption_budget_or_anti_affinity() {
    let Some((helm, _)) = tools() else {
        return;
    };
    let d = docs(&template(&helm, &["kms.replicas=1"]));
    let sts = find(&d, "StatefulSet", "strongroom-kms").unwrap();
    assert_eq!(sts["spec"]["replicas"], 1);
    assert!(sts["spec"]["template"]["spec"]["affinity"].is_null());
    assert!(find(&d, "PodDisruptionBudget", "strongroom-kms").is_none());
    let cm = find(&d, "ConfigMap", "strongroom-kms-config").unwrap();
    let hcl = cm["data"]["server.hcl"].as_str().unwrap();
    assert_eq!(hcl.matches("retry_join").count(), 1, "{hcl}");
}
