//! The audit trail over real HTTP: admin actions as JSON lines with the named fields, token
//! reads rolled up, no secret in any line, fail-closed refusals, and the binary's SIGHUP
//! reopening the file after a rotation.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use wxtoken::audit::{AuditSettings, SinkKind, LINE_FIELDS};

use crate::support::helpers::*;
use crate::support::process::{serve_at_trace, succeeds, wait_exit, wxtoken};

fn trail(path: &Path, fail_closed: bool) -> AuditSettings {
    AuditSettings {
        sink: SinkKind::File(path.to_owned()),
        admin: true,
        reads: true,
        fail_closed,
    }
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn of_event<'a>(lines: &'a [Value], event: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["event"] == event).collect()
}

/// `shop` and the `billing` and `ops` clients, their secrets from the variables the test
/// binary is given.
fn apps_and_clients() -> String {
    format!(
        "[[apps]]\nname = \"shop\"\nappid = \"{SHOP_APPID}\"\nsecret_env = \"WXTOKEN_TEST_SHOP_SECRET\"\n\
         [[clients]]\nname = \"billing\"\nkey_env = \"WXTOKEN_TEST_BILLING_KEY\"\napps = [\"shop\"]\n\
         [[clients]]\nname = \"ops\"\nkey_sha256 = \"{}\"\napps = [\"*\"]\nadmin = true\n",
        hex::encode(wxtoken::config::key_digest(OPS_KEY)),
    )
}

fn fingerprint(token: &str) -> String {
    wxtoken::secret::AccessToken::new(token)
        .fingerprint()
        .to_string()
}

#[actix_web::test]
async fn admin_actions_and_reads_are_lines_with_fingerprints_and_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let path_in = path.clone();
    let app = TestApp::builder()
        .adjust(move |(s, _)| s.audit = Some(trail(&path_in, false)))
        .start()
        .await;

    // Reads: three by billing, one by ops, of the same token.
    let first = app.shop_token().await;
    app.shop_token().await;
    app.shop_token().await;
    let a = app.get("/v1/apps/shop/token", Some(OPS_KEY)).await;
    assert_eq!(a.status, 200);

    // A forced refresh by invalidation (WeChat really rejects the token).
    assert!(app.fake.kill_token(&first));
    let inv = app.invalidate_shop(&first).await;
    assert_eq!(inv.status, 200, "{}", inv.body);
    let second = inv.token().access_token;
    assert_ne!(second, first);

    // Revoke and reload, by the admin.
    let revoked = app.post("/v1/apps/shop/revoke", Some(OPS_KEY), "").await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let third = revoked.body["access_token"].as_str().unwrap().to_string();
    // A reload of an in-process server without a file fails: recorded as failed all the same.
    let reload = app.post("/v1/admin/reload", Some(OPS_KEY), "").await;
    assert_ne!(reload.status, 200);
    // Not an admin: refused before the trail is asked, and no line.
    let denied = app
        .post("/v1/apps/shop/revoke", Some(BILLING_KEY), "")
        .await;
    assert_eq!(denied.status, 403);

    app.state.audit.flush_reads();
    let got = lines(&path);
    for line in &got {
        for field in LINE_FIELDS {
            assert!(line.get(field).is_some(), "{field} missing: {line}");
        }
    }
    let revokes = of_event(&got, "revoke");
    assert_eq!(revokes.len(), 1, "{got:?}");
    let r = revokes[0];
    assert_eq!(r["client"], "ops");
    assert_eq!(r["credential"], "shop");
    assert_eq!(r["outcome"], "ok");
    assert_eq!(r["route"], "/v1/apps/{name}/revoke");
    assert!(r["remote_addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(
        r["fingerprints"],
        serde_json::json!([fingerprint(&second), fingerprint(&third)])
    );

    let invalidations = of_event(&got, "invalidate");
    assert_eq!(invalidations.len(), 1, "{got:?}");
    assert_eq!(invalidations[0]["client"], "billing");
    assert_eq!(
        invalidations[0]["fingerprints"],
        serde_json::json!([fingerprint(&first), fingerprint(&second)])
    );

    let reloads = of_event(&got, "reload");
    assert_eq!(reloads.len(), 1);
    assert_eq!(reloads[0]["outcome"], "failed");

    let reads = of_event(&got, "reads");
    let billing = reads
        .iter()
        .find(|l| l["client"] == "billing" && l["credential"] == "shop")
        .expect("billing's reads");
    assert_eq!(billing["count"], 3);
    assert_eq!(
        billing["fingerprints"],
        serde_json::json!([fingerprint(&first)])
    );
    let ops = reads.iter().find(|l| l["client"] == "ops").unwrap();
    assert_eq!(ops["count"], 1);

    // No token, key or secret anywhere in the trail.
    let text = std::fs::read_to_string(&path).unwrap();
    for secret in [
        first.as_str(),
        &second,
        &third,
        BILLING_KEY,
        OPS_KEY,
        SHOP_SECRET,
    ] {
        assert!(!text.contains(secret), "a secret is in the trail");
    }
}

#[actix_web::test]
async fn a_trail_that_cannot_be_written_refuses_admin_actions_when_failing_closed() {
    // /dev/full takes the open and fails every write with ENOSPC, as a full disk does.
    let app = TestApp::builder()
        .adjust(|(s, _)| s.audit = Some(trail(Path::new("/dev/full"), true)))
        .start()
        .await;
    let refused = app.post("/v1/apps/shop/revoke", Some(OPS_KEY), "").await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.error().error, "unavailable", "{}", refused.body);
    assert!(
        refused.body.to_string().contains("audit"),
        "{}",
        refused.body
    );
    // Reads go on.
    let token = app.shop_token().await;
    assert!(!token.is_empty());
    // Revoking did not happen: the same token is served.
    assert_eq!(app.shop_token().await, token);
    let errors = app.metric("wxtoken_audit_write_errors_total").await;
    assert!(errors.unwrap_or(0.0) >= 2.0, "{errors:?}");
}

#[actix_web::test]
async fn a_trail_that_does_not_fail_closed_lets_admin_actions_through_and_counts_the_loss() {
    let app = TestApp::builder()
        .adjust(|(s, _)| s.audit = Some(trail(Path::new("/dev/full"), false)))
        .start()
        .await;
    let revoked = app.post("/v1/apps/shop/revoke", Some(OPS_KEY), "").await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let errors = app.metric("wxtoken_audit_write_errors_total").await;
    assert!(errors.unwrap_or(0.0) >= 2.0, "{errors:?}");
}

/// The binary: logrotate renames the file and sends SIGHUP; the next line lands in a new file
/// at the configured path. SIGTERM writes the minute's reads before the process ends.
#[actix_web::test]
async fn sighup_reopens_the_file_and_shutdown_writes_the_reads() {
    let spec = Spec::default();
    let fake = start_fake(&spec).await;
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("audit.log");
    let (mut child, base, _log) = serve_at_trace(
        dir.path(),
        &format!(
            "[upstream]\nbase_url = \"{}\"\nmin_token_lifetime_secs = 2\n[store]\npath = {}\n[audit]\nsink = \"file\"\npath = {}\n{}",
            fake.base_url(),
            toml::Value::String(dir.path().join("s.redb").display().to_string()),
            toml::Value::String(path.display().to_string()),
            apps_and_clients(),
        ),
    );
    let http = client();
    let (s, _) = get_json(&http, &format!("{base}/v1/apps/shop/token"), BILLING_KEY).await;
    assert_eq!(s, 200);
    let revoke = |http: awc::Client, base: String| async move {
        http.post(format!("{base}/v1/apps/shop/revoke"))
            .insert_header(("Authorization", format!("Bearer {OPS_KEY}")))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(revoke(http.clone(), base.clone()).await, 200);
    let rotated = dir.path().join("audit.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    // The reopen is done when the new file exists (the reload that follows logs its outcome).
    let reopened = eventually(Duration::from_secs(5), || async { path.exists() }).await;
    assert!(reopened, "SIGHUP reopened the audit file");
    assert_eq!(revoke(http.clone(), base.clone()).await, 200);
    let term = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = wait_exit(&mut child.0, Duration::from_secs(15));
    assert!(status.success(), "exit status {status}");

    let old = lines(&rotated);
    let new = lines(&path);
    assert_eq!(of_event(&old, "revoke").len(), 1, "{old:?}");
    assert_eq!(of_event(&new, "revoke").len(), 1, "{new:?}");
    let reads = of_event(&new, "reads");
    assert_eq!(reads.len(), 1, "{new:?}");
    assert_eq!(reads[0]["client"], "billing");
    assert_eq!(reads[0]["count"], 1);
}

/// `wxtoken rekey` is a key rotation: with `[audit]` it appends its line to the server's trail.
#[actix_web::test]
async fn rekey_records_a_key_rotation_in_the_trail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let config = dir.path().join("wxtoken.toml");
    std::fs::write(
        &config,
        format!(
            "[upstream]\nbase_url = \"http://127.0.0.1:9\"\n[store]\npath = {}\n[audit]\nsink = \"file\"\npath = {}\n{}",
            toml::Value::String(dir.path().join("s.redb").display().to_string()),
            toml::Value::String(path.display().to_string()),
            apps_and_clients(),
        ),
    )
    .unwrap();
    succeeds(&mut wxtoken(&[
        "rekey",
        "--config",
        config.to_str().unwrap(),
    ]));
    let got = lines(&path);
    let rotations = of_event(&got, "key_rotation");
    assert_eq!(rotations.len(), 1, "{got:?}");
    assert_eq!(rotations[0]["client"], "wxtoken rekey");
    assert_eq!(rotations[0]["outcome"], "ok");
}

/// The reads of `credential` in `lines`, by `client`.
fn reads_of<'a>(lines: &'a [Value], client: &str, credential: &str) -> Option<&'a Value> {
    lines
        .iter()
        .find(|l| l["event"] == "reads" && l["client"] == client && l["credential"] == credential)
}

#[actix_web::test]
async fn reads_with_a_component_or_suite_token_are_rolled_up_under_that_token() {
    use crate::support::facade::{facade_component_token, FACADE_KEY, SHOP};
    use crate::support::platform::{platform_and_crm, start_with_platform, COMPONENT};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");

    // The Open Platform: crm reads SHOP's token by key, then an SDK with the component token.
    let path_in = path.clone();
    let builder = TestApp::builder()
        .config(&platform_and_crm(FACADE_KEY).to_string())
        .adjust(move |(s, _)| s.audit = Some(trail(&path_in, false)));
    let app = start_with_platform(wxtoken::fake::FakeConfig::default(), builder).await;
    app.push_ticket().await;
    assert!(
        app.component_token_within(FACADE_KEY, Duration::from_secs(5))
            .await
    );
    let shop = app.authorize(SHOP, &[1], FACADE_KEY).await;
    let component = facade_component_token(&app, FACADE_KEY, "ignored").await;
    let component = component.body["component_access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let body = serde_json::json!({"component_appid": COMPONENT, "authorizer_appid": SHOP});
    let path_q =
        format!("/cgi-bin/component/api_authorizer_token?component_access_token={component}");
    let got = app.post(&path_q, None, body.to_string()).await;
    assert_eq!(
        got.body["authorizer_access_token"],
        shop.as_str(),
        "{}",
        got.body
    );
    app.state.audit.flush_reads();
    let trail_lines = lines(&path);
    let by_key = trail_lines
        .iter()
        .find(|l| {
            l["event"] == "reads"
                && l["client"] == "crm"
                && l["fingerprints"] == serde_json::json!([fingerprint(&shop)])
        })
        .expect("crm's reads of SHOP's token");
    let credential = by_key["credential"].as_str().unwrap();
    let by_token = reads_of(&trail_lines, "(component token)", credential)
        .unwrap_or_else(|| panic!("no component-token read of {credential}: {trail_lines:?}"));
    assert_eq!(by_token["count"], 1);
    assert_eq!(
        by_token["fingerprints"],
        serde_json::json!([fingerprint(&shop)])
    );
    drop(app);

    // WeCom: a corp's token through get_corp_token with the suite token.
    use crate::support::wecom::*;
    let path = dir.path().join("audit-wecom.log");
    let path_in = path.clone();
    let app = TestApp::builder()
        .fake(start_wecom_fake().await)
        .config(&wecom_tables("active"))
        .adjust(move |(s, _)| s.audit = Some(trail(&path_in, false)))
        .start()
        .await;
    route_callbacks(&app.fake, &app.base);
    app.suite_ready(SUITE, SUITE_ID).await;
    let corp = "wwcorp00000000077";
    let token = app.install(SUITE, SUITE_ID, corp).await;
    let suite_token = app.facade_suite_token_value().await;
    let got = app.facade_corp_token(&suite_token, corp).await;
    assert_eq!(got.body["access_token"], token.as_str(), "{}", got.body);
    app.state.audit.flush_reads();
    let trail_lines = lines(&path);
    let by_token = trail_lines
        .iter()
        .find(|l| l["event"] == "reads" && l["client"] == "(suite token)")
        .unwrap_or_else(|| panic!("no suite-token read: {trail_lines:?}"));
    assert!(
        by_token["credential"].as_str().unwrap().ends_with(corp),
        "{by_token}"
    );
    assert_eq!(
        by_token["fingerprints"],
        serde_json::json!([fingerprint(&token)])
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains(&token) && !text.contains(&suite_token),
        "a token is in the trail"
    );
}
