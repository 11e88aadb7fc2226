//! Consistency of the Helm chart (deploy/helm/strongroom) with the driver: the driver name
//! equals GetPluginInfo's, the example StorageClass is accepted by the driver's own
//! parameter parser, tenant secrets use `${pvc.namespace}`, the sidecars have the flags the
//! driver relies on, the node plugin is privileged with Bidirectional propagation and has no
//! access to Secrets. No helm binary is needed: values.yaml is parsed, and templates are
//! read as text or rendered with a minimal `{{ .Values.x }}` substitution.

use serde_yaml::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use strongroom_csi::DRIVER_NAME;
use strongroom_csi::{KmsCatalog, SecretFiles, VolumeParams, PVC_NAME, PVC_NAMESPACE};

fn chart_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/helm/strongroom")
}

fn template(name: &str) -> String {
    std::fs::read_to_string(chart_dir().join("templates").join(name))
        .unwrap_or_else(|e| panic!("template {name}: {e}"))
}

fn values() -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap())
        .unwrap()
}

fn lookup<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| {
        v.get(k)
            .unwrap_or_else(|| panic!("values.yaml has no {path}"))
    })
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// Minimal rendering: `{{ .Values.a.b }}` and `{{ .Values.a.b | quote }}` are substituted;
/// lines holding only control actions (`if`, `end`, `include ... | nindent`) are dropped.
fn render(text: &str, values: &Value) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("{{-") || t.starts_with("{{ include") {
            continue;
        }
        let mut l = line.to_owned();
        while let Some(i) = l.find("{{") {
            let j = l[i..].find("}}").expect("unterminated action") + i;
            let action = l[i + 2..j].trim().trim_start_matches('-').trim();
            let (expr, quote) = match action.split_once('|') {
                Some((e, f)) => (e.trim(), f.trim() == "quote"),
                None => (action, false),
            };
            let path = expr
                .strip_prefix(".Values.")
                .unwrap_or_else(|| panic!("cannot render {{{{ {action} }}}}"));
            let v = scalar(lookup(values, path));
            let v = if quote { format!("{v:?}") } else { v };
            l.replace_range(i..j + 2, &v);
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

fn docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

#[test]
fn driver_name_is_the_plugin_name_everywhere() {
    let v = values();
    assert_eq!(scalar(lookup(&v, "driverName")), DRIVER_NAME);
    let csidriver = docs(&render(&template("csidriver.yaml"), &v));
    assert_eq!(csidriver.len(), 1);
    assert_eq!(csidriver[0]["kind"], "CSIDriver");
    assert_eq!(scalar(&csidriver[0]["metadata"]["name"]), DRIVER_NAME);
    assert_eq!(csidriver[0]["spec"]["attachRequired"], Value::Bool(false));

    let sc = docs(&render(&template("storageclass.yaml"), &v));
    assert_eq!(scalar(&sc[0]["provisioner"]), DRIVER_NAME);

    // kubelet registers the socket under plugins/<driver name>/.
    let helpers = template("_helpers.tpl");
    assert!(
        helpers.contains("/plugins/{{ .Values.driverName }}"),
        "{helpers}"
    );
    let node = template("node.yaml");
    assert!(node
        .contains("--kubelet-registration-path={{ include \"strongroom.pluginDir\" . }}/csi.sock"));
    assert!(node.contains("path: {{ include \"strongroom.pluginDir\" . }}"));
}

#[test]
fn storage_class_is_accepted_by_the_driver() {
    let v = values();
    let sc = docs(&render(&template("storageclass.yaml"), &v));
    let params: HashMap<String, String> = sc[0]["parameters"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, val)| (scalar(k), scalar(val)))
        .collect();

    // Tenant secrets: every *-secret-name has a *-secret-namespace of ${pvc.namespace}.
    let names: Vec<&String> = params
        .keys()
        .filter(|k| k.ends_with("-secret-name"))
        .collect();
    for op in [
        "provisioner",
        "node-stage",
        "controller-expand",
        "node-expand",
    ] {
        let ns_key = format!("csi.storage.k8s.io/{op}-secret-namespace");
        assert_eq!(
            params.get(&ns_key).map(String::as_str),
            Some("${pvc.namespace}"),
            "{ns_key}"
        );
        let name_key = format!("csi.storage.k8s.io/{op}-secret-name");
        assert_eq!(
            params.get(&name_key),
            Some(&scalar(lookup(&v, "storageClass.tenantTokenSecretName"))),
            "{name_key}"
        );
    }
    assert_eq!(names.len(), 4);
    assert!(
        !params
            .keys()
            .any(|k| k.contains("controller-publish") || k.contains("node-publish")),
        "no secrets for calls that do not need them"
    );

    // What reaches CreateVolume: the provisioner strips csi.storage.k8s.io/* and adds the
    // PVC metadata (--extra-create-metadata).
    let mut create: HashMap<String, String> = params
        .into_iter()
        .filter(|(k, _)| !k.starts_with("csi.storage.k8s.io/"))
        .collect();
    create.insert(PVC_NAMESPACE.into(), "hc-vault".into());
    create.insert(PVC_NAME.into(), "pvc-cephrbd1".into());

    // The KMS catalog as the ConfigMap renders it (values.kmsConnections, JSON per kmsID).
    let conns = lookup(&v, "kmsConnections");
    let json =
        serde_json::to_string(&serde_yaml::from_value::<serde_json::Value>(conns.clone()).unwrap())
            .unwrap();
    let files = SecretFiles {
        dir: "/etc/strongroom/kms-secrets".into(),
    };
    let catalog = KmsCatalog::from_json(&json, &files)
        .unwrap()
        .with_default(Some(scalar(lookup(&v, "defaultKmsId"))))
        .unwrap();
    let p = VolumeParams::parse(&create, &catalog, &files, &Default::default())
        .expect("the example StorageClass is valid");
    assert_eq!(p.tenant, "hc-vault");
    assert_eq!(
        p.kms_id.as_deref(),
        Some(scalar(lookup(&v, "storageClass.kmsId")).as_str())
    );
    assert_eq!(
        p.protection.mode().as_str(),
        scalar(lookup(&v, "storageClass.protection"))
    );
}

fn container<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn args(c: &Value) -> Vec<String> {
    c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(scalar)
        .collect()
}

/// Render the workload templates well enough to parse them: loops over kmsSecrets are
/// empty in the default values, and `toYaml` of empty resources renders `{}`.
fn workload(name: &str) -> Value {
    let v = values();
    // Drop `range` blocks (loops over kmsSecrets, empty in the default values).
    let mut kept = Vec::new();
    let mut in_range = false;
    for l in template(name).lines() {
        if l.contains("{{- range") {
            in_range = true;
        } else if in_range && l.contains("{{- end") {
            in_range = false;
        } else if !in_range {
            kept.push(l.to_owned());
        }
    }
    let text = kept
        .iter()
        .map(|l| {
            l.replace(
                "{{- toYaml .Values.controller.resources | nindent 12 }}",
                "{}",
            )
        })
        .map(|l| l.replace("{{- toYaml .Values.node.resources | nindent 12 }}", "{}"))
        .map(|l| {
            l.replace(
                "{{- toYaml .Values.node.holderHost.resources | nindent 12 }}",
                "{}",
            )
        })
        .map(|l| l.replace("{{ include \"strongroom.fullname\" . }}", "rel"))
        .map(|l| l.replace("{{ include \"strongroom.image\" . }}", "strongroom:test"))
        .map(|l| {
            l.replace(
                "{{ include \"strongroom.pluginDir\" . }}",
                "/var/lib/kubelet/plugins/strongroom.csi.k8s.io",
            )
        })
        .map(|l| {
            l.replace("{{ .Release.Namespace }}", "storage")
                .replace("{{ .Release.Name }}", "rel")
        })
        .collect::<Vec<_>>()
        .join("\n");
    // The `resources:` key now holds `{}` on the following line: join them.
    let text = text.replace("resources:\n            {}", "resources: {}");
    let mut d = docs(&render(&text, &v));
    assert_eq!(d.len(), 1, "{name}");
    d.remove(0)
}

#[test]
fn controller_sidecars_and_flags() {
    let d = workload("controller.yaml");
    assert_eq!(d["kind"], "Deployment");
    let driver = args(container(&d, "strongroom-csi"));
    assert!(driver.contains(&"--mode=controller".to_owned()));
    assert!(driver.contains(&"--endpoint=unix:///csi/csi.sock".to_owned()));
    let prov = args(container(&d, "csi-provisioner"));
    assert!(
        prov.contains(&"--extra-create-metadata".to_owned()),
        "{prov:?}"
    );
    assert!(prov.contains(&"--csi-address=/csi/csi.sock".to_owned()));
    assert!(prov.contains(&"--leader-election".to_owned()));
    let resizer = args(container(&d, "csi-resizer"));
    assert!(resizer.contains(&"--csi-address=/csi/csi.sock".to_owned()));
    let probe = args(container(&d, "liveness-probe"));
    assert!(probe.contains(&"--csi-address=/csi/csi.sock".to_owned()));
    // The liveness probe port the driver container probes is the sidecar's.
    let port = scalar(lookup(&values(), "sidecars.livenessProbe.controllerPort"));
    assert!(probe.contains(&format!("--health-port={port}")));
    // No external-attacher (attachRequired: false).
    assert!(!template("controller.yaml").contains("csi-attacher"));
    assert_flags_exist(&driver);
}

#[test]
fn node_plugin_is_privileged_with_bidirectional_propagation() {
    let d = workload("node.yaml");
    assert_eq!(d["kind"], "DaemonSet");
    let c = container(&d, "strongroom-csi");
    assert_eq!(c["securityContext"]["privileged"], Value::Bool(true));
    let kubelet_dir = scalar(lookup(&values(), "kubeletDir"));
    let mounts = c["volumeMounts"].as_sequence().unwrap();
    let kubelet = mounts
        .iter()
        .find(|m| scalar(&m["mountPath"]) == kubelet_dir)
        .expect("kubelet dir mounted");
    assert_eq!(scalar(&kubelet["mountPropagation"]), "Bidirectional");
    let a = args(c);
    assert!(a.contains(&"--mode=node".to_owned()));
    assert!(a.contains(&"--node-id=$(NODE_ID)".to_owned()));
    assert_flags_exist(&a);
    let reg = args(container(&d, "node-driver-registrar"));
    assert!(reg.contains(&format!(
        "--kubelet-registration-path={kubelet_dir}/plugins/{DRIVER_NAME}/csi.sock"
    )));
    assert_eq!(
        d["spec"]["template"]["spec"]["automountServiceAccountToken"],
        Value::Bool(false)
    );
}

#[test]
fn node_plugin_has_no_access_to_secrets() {
    let node_rbac = template("rbac-node.yaml");
    let d = docs(&render(
        &node_rbac
            .replace("{{ include \"strongroom.fullname\" . }}", "rel")
            .replace("{{ .Release.Namespace }}", "storage"),
        &values(),
    ));
    assert!(
        d.iter().all(|doc| doc["kind"] == "ServiceAccount"),
        "only a ServiceAccount: {d:?}"
    );
    assert!(!node_rbac.contains("secrets"));
    // No binding anywhere in the chart names the node service account.
    for entry in std::fs::read_dir(chart_dir().join("templates")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for doc in text.split("\n---") {
            if doc.contains("kind: RoleBinding") || doc.contains("kind: ClusterRoleBinding") {
                assert!(
                    !doc.contains("-csi-node"),
                    "a binding for the node plugin: {doc}"
                );
            }
        }
    }
    // The controller's Secret access is read-only (`get`).
    let ctl = template("rbac-controller.yaml");
    let i = ctl
        .find("resources: [\"secrets\"]")
        .expect("provisioner reads the tenant Secret");
    assert!(ctl[i..]
        .lines()
        .nth(1)
        .unwrap()
        .contains("verbs: [\"get\"]"));
}

#[test]
fn kms_server_and_article_example() {
    let kms = template("kms-server.yaml");
    assert!(kms.contains("kind: StatefulSet"));
    assert!(kms.contains("- server") && kms.contains("--config=/etc/strongroom/server.hcl"));
    // The default KMS connection points at this server.
    let v = values();
    let id = scalar(lookup(&v, "defaultKmsId"));
    let addr = scalar(lookup(&v, &format!("kmsConnections.{id}.VAULT_ADDR")));
    assert_eq!(addr, "http://strongroom-kms:8200");
    assert!(kms.contains("name: strongroom-kms\n"));

    let ex = docs(&render(&template("example-tenant.yaml"), &v));
    let kinds: Vec<String> = ex.iter().map(|d| scalar(&d["kind"])).collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "Secret",
            "PersistentVolumeClaim",
            "PersistentVolumeClaim",
            "Job"
        ]
    );
    let ns = scalar(lookup(&v, "example.namespace"));
    assert_eq!(ns, "hc-vault");
    assert_eq!(
        scalar(&ex[1]["metadata"]["name"]),
        scalar(lookup(&v, "storageClass.tenantTokenSecretName"))
    );
    assert!(ex[1]["stringData"]["token"].is_string());
    let pvc = |i: usize| {
        (
            scalar(&ex[i]["metadata"]["name"]),
            scalar(&ex[i]["spec"]["resources"]["requests"]["storage"]),
            scalar(&ex[i]["spec"]["storageClassName"]),
        )
    };
    assert_eq!(
        pvc(2),
        ("pvc-cephrbd1".into(), "500Gi".into(), "sc-enc".into())
    );
    assert_eq!(
        pvc(3),
        ("pvc-cephrbd2".into(), "500Mi".into(), "sc-enc".into())
    );
    let claims: Vec<String> = ex[4]["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|vol| scalar(&vol["persistentVolumeClaim"]["claimName"]))
        .collect();
    assert_eq!(claims, ["pvc-cephrbd1", "pvc-cephrbd2"]);
}

/// The holder host (issue 17): its own DaemonSet that a chart upgrade never restarts
/// (`OnDelete`), in the node's PID namespace, privileged for FUSE mounts; the node plugin asks
/// it on the socket it listens on, both see the same volumes root (with Bidirectional
/// propagation, so the FUSE mounts it makes reach the plugin), and holders get no memory
/// limit by default (an OOM kill of its container would take every holder down).
#[test]
fn holder_host_survives_plugin_upgrades_and_shares_the_volumes_root() {
    let d = workload("holder-host.yaml");
    assert_eq!(d["kind"], "DaemonSet");
    assert_eq!(d["spec"]["updateStrategy"]["type"], "OnDelete");
    assert_eq!(d["spec"]["template"]["spec"]["hostPID"], Value::Bool(true));
    let c = container(&d, "holder-host");
    assert_eq!(c["securityContext"]["privileged"], Value::Bool(true));
    let socket = scalar(lookup(&values(), "node.holderHost.socket"));
    let host_args = args(c);
    assert!(
        host_args.contains(&"holder-host".to_owned()),
        "{host_args:?}"
    );
    assert!(
        host_args.contains(&format!("--socket={socket}")),
        "{host_args:?}"
    );
    let node = workload("node.yaml");
    let plugin = container(&node, "strongroom-csi");
    let plugin_args = args(plugin);
    assert!(plugin_args.contains(&format!("--holder-host={socket}")));
    let root = |a: &[String]| {
        a.iter()
            .find_map(|x| x.strip_prefix("--root="))
            .map(str::to_owned)
    };
    assert_eq!(root(&host_args), root(&plugin_args));
    let mount = |c: &Value| {
        c["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|m| scalar(&m["name"]) == "volumes-root")
            .cloned()
            .expect("volumes-root mounted")
    };
    let (hm, pm) = (mount(c), mount(plugin));
    assert_eq!(hm["mountPath"], pm["mountPath"]);
    assert_eq!(scalar(&hm["mountPropagation"]), "Bidirectional");
    assert!(socket.starts_with(&scalar(&hm["mountPath"])), "{socket}");
    assert_eq!(
        lookup(&values(), "node.holderHost.resources"),
        &Value::Mapping(Default::default())
    );
}

/// Every `--flag` the chart passes to `strongroom csi` exists in its clap arguments.
fn assert_flags_exist(args: &[String]) {
    let src = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../strongroom/src/cmd/csi.rs"),
    )
    .unwrap();
    for a in args.iter().filter(|a| a.starts_with("--")) {
        let flag = a.trim_start_matches("--").split('=').next().unwrap();
        let field = format!("    {}: ", flag.replace('-', "_"));
        assert!(src.contains(&field), "strongroom csi has no --{flag}");
    }
}

/// The controller creates file-backed volumes where the node plugin opens them: both get the
/// same `--root` inside the same hostPath, and the same `--cluster-id` (bound into every
/// wrapped secret: a mismatch would make every volume unopenable).
#[test]
fn controller_and_node_share_volumes_root_and_cluster_id() {
    let root = scalar(lookup(&values(), "volumesRoot"));
    let cluster = scalar(lookup(&values(), "clusterId"));
    let mut seen = vec![];
    for name in ["controller.yaml", "node.yaml"] {
        let d = workload(name);
        let c = container(&d, "strongroom-csi");
        let a = args(c);
        let flag = a
            .iter()
            .find_map(|x| x.strip_prefix("--root="))
            .unwrap_or_else(|| panic!("{name}: no --root"))
            .to_owned();
        assert!(
            a.contains(&format!("--cluster-id={cluster}")),
            "{name}: {a:?}"
        );
        let mount = c["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|m| scalar(&m["name"]) == "volumes-root")
            .unwrap_or_else(|| panic!("{name}: volumes-root not mounted"));
        let mp = scalar(&mount["mountPath"]);
        assert!(flag.starts_with(&mp), "{name}: --root {flag} outside {mp}");
        let vol = d["spec"]["template"]["spec"]["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| scalar(&v["name"]) == "volumes-root")
            .unwrap_or_else(|| panic!("{name}: no volumes-root volume"));
        assert_eq!(scalar(&vol["hostPath"]["path"]), root, "{name}");
        seen.push(flag);
    }
    assert_eq!(seen[0], seen[1], "controller and node disagree on --root");
}
