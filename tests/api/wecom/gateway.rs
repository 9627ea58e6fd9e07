//! WeCom service providers' tokens through the gateway: wechatpy's work client with a corp
//! token from wxtoken making its calls through the pass-through, a corp token rotated behind
//! wxtoken's back retried once with the current one, `get_permanent_code` never forwarded, a
//! forwarded answer's permanent codes masked, and the corp proxy route's checks.

use serde_json::{json, Value};

use crate::support::helpers::TestApp;
use crate::support::wecom::*;

/// wechatpy's WeCom client (`wechatpy.enterprise` in 1.x, `wechatpy.work` later) holding a
/// corp token from wxtoken, its API base URL at wxtoken: `department/list` twice, with the
/// corp's token rotated behind wxtoken's back in between (the script waits for a line).
const WECHATPY_WORK: &str = r#"
import sys, json
try:
    from wechatpy.work import WeChatClient
except ImportError:
    from wechatpy.enterprise import WeChatClient
base, corpid, token = sys.argv[1:4]
class ThroughWxtoken(WeChatClient):
    API_BASE_URL = base + "/cgi-bin/"
    def fetch_access_token(self):
        raise RuntimeError("the SDK must never fetch a token itself")
c = ThroughWxtoken(corpid, "no-secret-here", access_token=token)
first = c.department.get()
sys.stdout.write(json.dumps(first) + "\n"); sys.stdout.flush()
sys.stdin.readline()
second = c.department.get()
print(json.dumps(second))
"#;

#[actix_web::test]
async fn wechatpy_work_client_calls_through_the_gateway_and_a_rotated_token_is_retried() {
    crate::support::wechatpy::require_wechatpy();
    let app = start_wecom("active").await;
    app.suite_ready(SUITE, SUITE_ID).await;
    let corp = "wwcorp00000000050";
    let token = app.install(SUITE, SUITE_ID, corp).await;
    let (base, corpid, tok) = (app.base.clone(), corp.to_string(), token.clone());
    let fake = app.fake.clone();
    let out = actix_web::rt::task::spawn_blocking(move || {
        use std::io::{BufRead as _, Write as _};
        let mut child = std::process::Command::new("python3")
            .args(["-c", WECHATPY_WORK, &base, &corpid, &tok])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        assert!(fake.rotate_corp_token(SUITE_ID, &corpid));
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let mut second = String::new();
        stdout.read_line(&mut second).unwrap();
        let status = child.wait_with_output().unwrap();
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        (first, second)
    })
    .await
    .unwrap();
    let first: Value = serde_json::from_str(&out.0).expect("JSON");
    let second: Value = serde_json::from_str(&out.1).expect("JSON");
    assert_eq!(first[0]["name"], corp, "{first}");
    assert_eq!(second[0]["name"], corp, "{second}");
    // The rotation cost one more get_corp_token, and wxtoken now serves the new token.
    assert_eq!(app.fake.corp_tokens_minted(SUITE_ID, corp), 2);
    let now = app.corp_token(SUITE, corp).await;
    assert_ne!(now.body["access_token"], token.as_str());
    assert_eq!(
        app.fake.suite_calls("department/list"),
        3,
        "one call, one retry, one call"
    );
}

#[actix_web::test]
async fn a_corp_token_holder_cannot_make_wecom_mint_tickets_through_the_gateway() {
    let corp = "wwcorp00000000088";
    let app = start_with_corp(corp).await;
    let suite = app.state.wecom_suites[SUITE].clone();
    let token = app.corp_token(SUITE, corp).await.body["access_token"]
        .as_str()
        .expect("a token")
        .to_string();
    let before = (
        app.fake.suite_calls("get_jsapi_ticket"),
        app.fake.suite_calls("ticket/get"),
    );
    for path in [
        "/cgi-bin/get_jsapi_ticket",
        "/cgi-bin//GET_JSAPI_TICKET",
        "/cgi-bin/ticket/get?type=agent_config",
    ] {
        let sep = if path.contains('?') { '&' } else { '?' };
        let a = app
            .get(&format!("{path}{sep}access_token={token}"), None)
            .await;
        assert_ne!(a.body["errcode"], 0, "{path}: {}", a.body);
        assert!(a.body.get("ticket").is_none(), "{path}: {}", a.body);
    }
    assert_eq!(
        (
            app.fake.suite_calls("get_jsapi_ticket"),
            app.fake.suite_calls("ticket/get"),
        ),
        before,
        "nothing reached WeCom"
    );
    assert!(suite.corp_has_actor(corp));
}

#[actix_web::test]
async fn get_permanent_code_is_never_forwarded_in_any_spelling() {
    let app = start_wecom("active").await;
    app.suite_ready(SUITE, SUITE_ID).await;
    let suite_token = app.facade_suite_token_value().await;
    let before = app.fake.suite_calls("get_permanent_code");
    for path in [
        "/cgi-bin/service/get_permanent_code",
        "/cgi-bin/service/v2/get_permanent_code",
        "/cgi-bin//service/v2/get_permanent_code",
        "/cgi-bin/service/GET_PERMANENT_CODE",
    ] {
        let a = app
            .wecom_call(
                &format!("{path}?suite_access_token={suite_token}"),
                json!({"auth_code": "some-auth-code-0000000"}),
            )
            .await;
        assert_eq!(a.body["errcode"], 48002, "{path}: {}", a.body);
        assert!(a.body["errmsg"]
            .as_str()
            .unwrap()
            .contains("permanent code"));
    }
    assert_eq!(app.fake.suite_calls("get_permanent_code"), before);
}

#[actix_web::test]
async fn a_forwarded_answer_carrying_a_permanent_code_is_masked() {
    let app = start_wecom("active").await;
    app.suite_ready(SUITE, SUITE_ID).await;
    let corp = "wwcorp00000000051";
    app.install_unserved(SUITE, SUITE_ID, corp).await;
    let code = app.fake.permanent_code(SUITE_ID, corp).expect("a code");
    let suite_token = app.facade_suite_token_value().await;
    let a = app
        .wecom_call(
            &format!("/cgi-bin/service/get_admin_list?suite_access_token={suite_token}"),
            json!({"auth_corpid": corp, "agentid": 1000001}),
        )
        .await;
    assert_eq!(a.body["errcode"], 0, "{}", a.body);
    assert_eq!(a.body["admin"][0]["userid"], "admin");
    assert_eq!(a.body["permanent_code"], "WXTOKEN_HOLDS_THE_PERMANENT_CODE");
    assert_eq!(
        a.body["corp_info"]["PermanentCode"],
        "WXTOKEN_HOLDS_THE_PERMANENT_CODE"
    );
    assert!(!a.body.to_string().contains(&code));
    assert_eq!(app.fake.suite_calls("get_admin_list"), 1);
    // A suite token that is not wxtoken's is refused before anything is forwarded.
    let foreign = app
        .wecom_call(
            "/cgi-bin/service/get_admin_list?suite_access_token=not-ours-000000000",
            json!({"auth_corpid": corp}),
        )
        .await;
    assert_eq!(foreign.body["errcode"], 40082, "{}", foreign.body);
    assert_eq!(app.fake.suite_calls("get_admin_list"), 1);
}

#[actix_web::test]
async fn the_corp_proxy_route_checks_key_permission_and_suite() {
    let app = TestApp::builder()
        .fake(start_wecom_fake().await)
        .config(&format!(
            "{}\n[[clients]]\nname = \"backend\"\nkey = \"{PROXY_KEY}\"\nwecom_suites = [\"{SUITE}\"]\nproxy = true\n\
             [[clients]]\nname = \"templated\"\nkey = \"{TEMPLATE_PROXY_KEY}\"\nwecom_suites = [\"{TEMPLATE}\"]\nproxy = true\n",
            wecom_tables("active")
        ))
        .start()
        .await;
    route_callbacks(&app.fake, &app.base);
    app.suite_ready(SUITE, SUITE_ID).await;
    let corp = "wwcorp00000000052";
    app.install_unserved(SUITE, SUITE_ID, corp).await;
    let path = app.suite_path(
        SUITE,
        &format!("/corps/{corp}/proxy/cgi-bin/department/list"),
    );
    assert_eq!(app.get(&path, None).await.status, 401);
    assert_eq!(
        app.get(&path, Some(KEY)).await.status,
        403,
        "crm has no proxy permission"
    );
    assert_eq!(
        app.get(&path, Some(TEMPLATE_PROXY_KEY)).await.status,
        403,
        "another suite's client"
    );
    let unknown = app.suite_path(
        SUITE,
        "/corps/wwnotinstalled00/proxy/cgi-bin/department/list",
    );
    assert_eq!(app.get(&unknown, Some(PROXY_KEY)).await.status, 404);
    let refused = app.suite_path(
        SUITE,
        &format!("/corps/{corp}/proxy/cgi-bin/service/v2/get_permanent_code"),
    );
    assert_eq!(app.get(&refused, Some(PROXY_KEY)).await.status, 400);
    let ok = app.get(&path, Some(PROXY_KEY)).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["department"][0]["name"], corp, "{}", ok.body);
    assert_eq!(app.fake.suite_calls("department/list"), 1);
}

const PROXY_KEY: &str = "wecom-proxy-client-key-00001";
const TEMPLATE_PROXY_KEY: &str = "wecom-template-proxy-key-0001";
