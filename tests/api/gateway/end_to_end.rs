//! The API gateway over real HTTP: SDK calls through the pass-through, the proxy routes, the
//! one retry on a rotated token, the AppSecret logins, limits, streaming and metrics.

use std::time::Duration;

use actix_web::web::Bytes;
use serde_json::Value;
use wxtoken::fake::{Endpoint, Fault};

use crate::support::gateway::*;
use crate::support::helpers::*;

/// wechatpy with its `API_BASE_URL` pointed at wxtoken (and its token URL, which 1.x fixes,
/// at the facade): every business call of the SDK's own goes through the gateway.
const WECHATPY_CALLS: &str = r#"
import sys, json
from wechatpy.client import WeChatClient
base, appid, key = sys.argv[1:4]
class ThroughWxtoken(WeChatClient):
    API_BASE_URL = base + "/cgi-bin/"
    def fetch_access_token(self):
        return self._fetch_access_token(url=base + "/cgi-bin/token", params={
            "grant_type": "client_credential", "appid": self.appid, "secret": self.secret})
c = ThroughWxtoken(appid, key)
user = c.user.get("openid-1")
menu = c.menu.get()
sent = c.message.send_text("openid-1", "hello through wxtoken")
print(json.dumps({"user": user, "menu": menu, "sent": sent}))
"#;

#[actix_web::test]
async fn wechatpy_pointed_at_wxtoken_completes_its_business_calls() {
    crate::support::wechatpy::require_wechatpy();
    let app = gateway("").await;
    let token = app.shop_token().await;
    let out = crate::support::wechatpy::python(
        WECHATPY_CALLS,
        vec![app.base.clone(), SHOP_APPID.into(), BILLING_KEY.into()],
    )
    .await;
    let answers: Value = serde_json::from_str(&out).expect("the SDK printed JSON");
    assert_eq!(answers["user"]["openid"], "openid-1", "{answers}");
    assert!(answers["menu"].is_object(), "{answers}");
    assert_eq!(answers["sent"]["errcode"], 0, "{answers}");
    let sent = app.fake.messages_sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["text"]["content"], "hello through wxtoken");
    // Each call reached the fake with the shared token; no one fetched another.
    for path in [
        "/cgi-bin/user/info",
        "/cgi-bin/menu/get",
        "/cgi-bin/message/custom/send",
    ] {
        let reqs = app.fake.api_requests(path);
        assert_eq!(reqs.len(), 1, "{path}");
        let sent_token = reqs[0].query.iter().find(|(k, _)| k == "access_token");
        assert_eq!(sent_token.map(|(_, v)| v.as_str()), Some(token.as_str()));
    }
    assert_eq!(app.minted(SHOP_APPID), 1);
    assert_eq!(
        app.metric(r#"wxtoken_proxy_requests_total{app="shop",result="ok"}"#)
            .await,
        Some(3.0)
    );
}

#[actix_web::test]
async fn forwarded_calls_reuse_their_connection_to_wechat() {
    let app = gateway("").await;
    app.shop_token().await;
    for i in 0..20 {
        let (status, _, _) = app
            .get_raw(
                &format!("/v1/apps/shop/proxy/cgi-bin/user/info?openid=o{i}"),
                Some(BACKEND_KEY),
            )
            .await;
        assert_eq!(status, 200);
    }
    // One call at a time: one connection per HTTP worker that served them, at most (a new
    // connection per call would cost a handshake each, and a socket in TIME-WAIT).
    let peers: std::collections::HashSet<_> = app
        .fake
        .api_requests("/cgi-bin/user/info")
        .iter()
        .map(|r| r.peer.expect("peer known"))
        .collect();
    assert!(
        peers.len() <= 2,
        "{} connections for the last 16 calls",
        peers.len()
    );
}

#[actix_web::test]
async fn a_token_wxtoken_did_not_issue_never_reaches_wechat() {
    let app = gateway("").await;
    app.shop_token().await;
    let (status, _, body) = app.get_raw("/cgi-bin/user/info?openid=o1", None).await;
    assert_eq!(
        (status, json(&body)["errcode"].clone()),
        (200, 41001.into())
    );
    let (status, _, body) = app
        .get_raw(
            "/cgi-bin/user/info?access_token=made-up-token&openid=o1",
            None,
        )
        .await;
    assert_eq!(
        (status, json(&body)["errcode"].clone()),
        (200, 40001.into())
    );
    // Nor a token WeChat handed out to someone else (valid there, unknown to wxtoken).
    let url = format!(
        "{}/cgi-bin/token?grant_type=client_credential&appid={SHOP_APPID}&secret={SHOP_SECRET}",
        app.fake.base_url()
    );
    let mut resp = app.http.get(url).send().await.expect("fake answers");
    let other = json(&resp.body().await.unwrap())["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, _, body) = app
        .get_raw(
            &format!("/cgi-bin/user/info?access_token={other}&openid=o1"),
            None,
        )
        .await;
    assert_eq!(json(&body)["errcode"], 40001);
    assert_eq!(app.fake.api_calls("/cgi-bin/user/info"), 0);
    assert_eq!(
        app.metric(r#"wxtoken_proxy_requests_total{app="",result="refused"}"#)
            .await,
        Some(3.0)
    );
}

#[actix_web::test]
async fn a_rotated_token_is_reported_once_and_the_call_repeated_with_the_new_one() {
    let app = gateway("").await;
    let old = app.shop_token().await;
    rotate_behind_wxtoken(&app.fake).await;
    let minted = app.minted(SHOP_APPID);
    let (status, _, body) = app
        .get_raw(
            &format!("/cgi-bin/user/info?access_token={old}&openid=o1&lang=zh_CN"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(json(&body)["openid"], "o1", "{}", json(&body));
    assert_eq!(
        app.minted(SHOP_APPID),
        minted + 1,
        "one fetch for the rejection"
    );
    let reqs = app.fake.api_requests("/cgi-bin/user/info");
    assert_eq!(reqs.len(), 2, "the call, then its one repetition");
    let new = app.shop_token().await;
    assert_ne!(new, old);
    let tokens: Vec<&str> = reqs
        .iter()
        .map(|r| {
            r.query
                .iter()
                .find(|(k, _)| k == "access_token")
                .map(|(_, v)| v.as_str())
                .unwrap()
        })
        .collect();
    assert_eq!(tokens, [old.as_str(), new.as_str()]);
    // The other parameters arrive unchanged, in order, both times.
    for r in &reqs {
        let rest: Vec<(&str, &str)> = r
            .query
            .iter()
            .filter(|(k, _)| k != "access_token")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(rest, [("openid", "o1"), ("lang", "zh_CN")]);
    }
    app.assert_metrics(&[
        (
            r#"wxtoken_proxy_requests_total{app="shop",result="retried"}"#,
            1.0,
        ),
        (r#"wxtoken_proxy_retries_total{app="shop"}"#, 1.0),
    ])
    .await;
    // The client's old token is still the previous one wxtoken knows: accepted, and sent as
    // the current one, so WeChat sees no rejection this time.
    let (status, _, _) = app
        .get_raw(
            &format!("/cgi-bin/user/info?access_token={old}&openid=o1"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(app.fake.api_calls("/cgi-bin/user/info"), 3);
}

#[actix_web::test]
async fn a_thousand_calls_meeting_a_rotated_token_cost_one_fetch_and_one_retry_each() {
    let app = gateway("max_concurrent = 1000").await;
    app.shop_token().await;
    rotate_behind_wxtoken(&app.fake).await;
    let minted = app.minted(SHOP_APPID);
    // Answers take a moment, so the calls are all in flight when the first rejection comes.
    app.fake
        .inject_at(Endpoint::Api, Fault::Slow(Duration::from_millis(300)), 1000);
    let calls = (0..1000).map(|i| {
        let app = &app;
        async move {
            app.get_raw(
                &format!("/v1/apps/shop/proxy/cgi-bin/user/info?openid=o{i}"),
                Some(BACKEND_KEY),
            )
            .await
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    for (i, (status, _, body)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "call {i}: {}", json(body));
        assert_eq!(json(body)["openid"], format!("o{i}"));
    }
    assert_eq!(app.minted(SHOP_APPID), minted + 1, "one fetch for them all");
    let reached = app.fake.api_calls("/cgi-bin/user/info");
    let retries = app
        .metric(r#"wxtoken_proxy_retries_total{app="shop"}"#)
        .await
        .unwrap_or(0.0) as u64;
    assert!(retries >= 1, "the rotated token was met");
    assert_eq!(reached, 1000 + retries, "at most one repetition each");
    assert!(reached <= 2000);
}

#[actix_web::test]
async fn token_endpoints_are_never_forwarded() {
    let app = gateway("").await;
    app.shop_token().await;
    let before = (
        app.fake.calls(Endpoint::Token),
        app.fake.calls(Endpoint::StableToken),
        app.fake.calls(Endpoint::WecomToken),
    );
    for (method, path) in [
        ("POST", "/cgi-bin/token?grant_type=client_credential"),
        ("GET", "/cgi-bin/stable_token"),
        ("GET", "/cgi-bin/component/api_component_token"),
    ] {
        let (status, _, _) = app.raw(method, path, None, &[], vec![]).await;
        assert_eq!(status, 405, "{method} {path}");
    }
    let (status, _, body) = app
        .get_raw(
            &format!("/cgi-bin/gettoken?corpid={CORPID}&corpsecret={CORP_SECRET}"),
            None,
        )
        .await;
    // In WeChat's format, so an SDK reads it as the refusal it is.
    assert_eq!(status, 200);
    assert_eq!(json(&body)["errcode"], 48001, "{}", json(&body));
    for path in ["cgi-bin/token", "cgi-bin/stable_token", "cgi-bin/gettoken"] {
        let (status, _, body) = app
            .get_raw(
                &format!("/v1/apps/shop/proxy/{path}?grant_type=client_credential"),
                Some(BACKEND_KEY),
            )
            .await;
        assert_eq!(status, 400, "{path}: {}", json(&body));
    }
    // The facade's own token route still answers as it did.
    let (status, _, body) = app
        .get_raw(&format!(
                "/cgi-bin/token?grant_type=client_credential&appid={SHOP_APPID}&secret={BILLING_KEY}"
            ), None)
        .await;
    assert_eq!(status, 200);
    assert!(json(&body)["access_token"].is_string());
    let after = (
        app.fake.calls(Endpoint::Token),
        app.fake.calls(Endpoint::StableToken),
        app.fake.calls(Endpoint::WecomToken),
    );
    assert_eq!(before, after, "no token call reached WeChat");
}

#[actix_web::test]
async fn logins_take_the_client_key_and_wechat_gets_the_real_secret() {
    let app = gateway("").await;
    let (status, _, body) = app
        .get_raw(&format!(
                "/sns/jscode2session?appid={SHOP_APPID}&secret={BILLING_KEY}&js_code=code-1&grant_type=authorization_code"
            ), None)
        .await;
    assert_eq!(status, 200);
    let answer = json(&body);
    assert!(answer["openid"].is_string(), "{answer}");
    assert!(!String::from_utf8_lossy(&body).contains(SHOP_SECRET));
    let reqs = app.fake.api_requests("/sns/jscode2session");
    assert_eq!(reqs.len(), 1);
    let secret = reqs[0].query.iter().find(|(k, _)| k == "secret").unwrap();
    assert_eq!(secret.1, SHOP_SECRET, "the real AppSecret, not the key");
    // Web OAuth too.
    let (_, _, body) = app
        .get_raw(&format!(
                "/sns/oauth2/access_token?appid={SHOP_APPID}&secret={BILLING_KEY}&code=code-2&grant_type=authorization_code"
            ), None)
        .await;
    assert!(json(&body)["openid"].is_string(), "{}", json(&body));
    let oauth = app.fake.api_requests("/sns/oauth2/access_token");
    assert_eq!(
        oauth[0]
            .query
            .iter()
            .find(|(k, _)| k == "secret")
            .unwrap()
            .1,
        SHOP_SECRET
    );
    // A wrong key, or a key of a client that may not use the app: WeChat's answers, and the
    // call never reaches WeChat.
    for (appid, key, errcode) in [
        (SHOP_APPID, "wrong-client-key-0000000000", 40125),
        (SHOP_APPID, SHOP_SECRET, 40125),
        (BLOG_APPID, BILLING_KEY, 40164),
        ("wxunknown000000001", BILLING_KEY, 40013),
    ] {
        let (status, _, body) = app
            .get_raw(&format!(
                    "/sns/jscode2session?appid={appid}&secret={key}&js_code=c&grant_type=authorization_code"
                ), None)
            .await;
        assert_eq!(
            (status, json(&body)["errcode"].clone()),
            (200, errcode.into())
        );
    }
    assert_eq!(app.fake.api_calls("/sns/jscode2session"), 1);
}

#[actix_web::test]
async fn the_proxy_routes_need_the_proxy_flag() {
    let app = gateway("").await;
    app.shop_token().await;
    let path = "/v1/apps/shop/proxy/cgi-bin/user/info?openid=o1";
    let (status, _, body) = app.get_raw(path, Some(BILLING_KEY)).await;
    assert_eq!(status, 403, "{}", json(&body));
    assert!(json(&body)["message"]
        .as_str()
        .unwrap()
        .contains("proxy = true"));
    let (status, _, _) = app.get_raw(path, None).await;
    assert_eq!(status, 401);
    let (status, _, _) = app
        .get_raw("/v1/apps/blog/proxy/cgi-bin/user/info", Some(BACKEND_KEY))
        .await;
    assert_eq!(status, 403, "not one of the client's apps");
    let (status, _, _) = app
        .get_raw("/v1/apps/nope/proxy/cgi-bin/user/info", Some(BACKEND_KEY))
        .await;
    assert_eq!(status, 404);
    assert_eq!(app.fake.api_calls("/cgi-bin/user/info"), 0);
    // With the flag, the call is made with the token wxtoken adds.
    let (status, _, body) = app.get_raw(path, Some(BACKEND_KEY)).await;
    assert_eq!(status, 200, "{}", json(&body));
    assert_eq!(json(&body)["openid"], "o1");
    let sent = &app.fake.api_requests("/cgi-bin/user/info")[0];
    assert!(
        !sent.headers.iter().any(|(n, _)| n == "authorization"),
        "the client key stays with wxtoken"
    );
}

#[actix_web::test]
async fn wecom_apps_are_forwarded_to_wecom() {
    let spec = Spec::default();
    let wechat = start_fake(&spec).await;
    let wecom = start_fake_with(&spec, &[], &[(CORPID, CORP_SECRET)]).await;
    let wecom_base = wecom.base_url();
    let app = TestApp::builder()
        .spec(spec)
        .fake(wechat)
        .config(&apps_and_clients(""))
        .adjust(|(s, _)| {
            s.upstream.wecom_base_url = wecom_base;
        })
        .start()
        .await;
    let (status, _, body) = app
        .raw(
            "POST",
            "/v1/apps/corp/proxy/cgi-bin/message/custom/send",
            Some(BACKEND_KEY),
            &[("content-type", "application/json")],
            br#"{"touser":"u1","msgtype":"text","text":{"content":"hi"}}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 200, "{}", json(&body));
    assert_eq!(json(&body)["errcode"], 0);
    assert_eq!(wecom.api_calls("/cgi-bin/message/custom/send"), 1);
    assert_eq!(app.fake.api_calls("/cgi-bin/message/custom/send"), 0);
}

#[actix_web::test]
async fn bodies_above_the_limit_are_413_and_never_forwarded() {
    let app = gateway("max_body_bytes = 1048576").await;
    let token = app.shop_token().await;
    let path = format!("/cgi-bin/message/custom/send?access_token={token}");
    let (status, _, _) = app
        .raw(
            "POST",
            &path,
            None,
            &[("content-type", "application/json")],
            vec![b' '; 1024 * 1024 + 1],
        )
        .await;
    assert_eq!(status, 413);
    // A chunked body is counted as it arrives.
    let chunks = futures_util::stream::iter(
        (0..17).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 64 * 1024]))),
    );
    let resp = app
        .http
        .post(format!("{}{path}", app.base))
        .insert_header(("content-type", "application/json"))
        .send_stream(chunks)
        .await
        .expect("sent");
    assert_eq!(resp.status(), 413);
    assert_eq!(app.fake.api_calls("/cgi-bin/message/custom/send"), 0);
    // At the limit, it is forwarded.
    let mut body = br#"{"touser":"u1","msgtype":"text","text":{"content":"hi"}}"#.to_vec();
    body.resize(1024 * 1024, b' ');
    let (status, _, answer) = app
        .raw(
            "POST",
            &path,
            None,
            &[("content-type", "application/json")],
            body,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(json(&answer)["errcode"], 0);
}

/// A multipart/form-data body with one `media` file part, as SDKs upload media.
fn multipart(file: &[u8]) -> (String, Vec<u8>) {
    let boundary = "wxtoken-test-boundary-7d1f3a";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"media\"; filename=\"big.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn ten_mib() -> Vec<u8> {
    // Not one repeated byte: a shifted or truncated copy would not compare equal.
    (0..10 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

#[actix_web::test]
async fn a_10_mib_upload_made_with_a_rotated_token_arrives_once_intact() {
    let app = gateway("").await;
    let old = app.shop_token().await;
    rotate_behind_wxtoken(&app.fake).await;
    let file = ten_mib();
    let (content_type, body) = multipart(&file);
    let (status, _, answer) = app
        .raw(
            "POST",
            &format!("/cgi-bin/media/upload?access_token={old}&type=image"),
            None,
            &[("content-type", &content_type)],
            body.clone(),
        )
        .await;
    assert_eq!(status, 200);
    let answer = json(&answer);
    let media_id = answer["media_id"].as_str().expect("a media_id");
    let (stored, stored_type) = app.fake.media(media_id).expect("stored");
    assert!(stored == file, "the upload arrived byte for byte");
    assert_eq!(stored_type, "image/jpeg");
    // Rejected once (nothing stored), then replayed with the same body.
    let reqs = app.fake.api_requests("/cgi-bin/media/upload");
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        assert!(r.body == body, "the replay carries the same body");
    }
}

#[actix_web::test]
async fn a_10_mib_download_streams_back_byte_identical_with_its_headers() {
    let app = gateway("").await;
    app.shop_token().await;
    let file = ten_mib();
    let media_id = app.fake.put_media(file.clone(), "video/mp4");
    let (status, headers, body) = app
        .get_raw(
            &format!("/v1/apps/shop/proxy/cgi-bin/media/get?media_id={media_id}"),
            Some(BACKEND_KEY),
        )
        .await;
    assert_eq!(status, 200);
    assert!(body.as_ref() == file.as_slice(), "byte-identical download");
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    assert_eq!(header("content-type"), "video/mp4");
    assert!(header("content-disposition").contains(&media_id));
    assert_eq!(header("content-length"), file.len().to_string());
}

#[actix_web::test]
async fn a_wechat_that_does_not_answer_is_a_gateway_timeout() {
    let app = gateway("timeout_secs = 1").await;
    app.shop_token().await;
    app.fake
        .inject_at(Endpoint::Api, Fault::Slow(Duration::from_secs(3)), 1);
    let (status, _, body) = app
        .get_raw(
            "/v1/apps/shop/proxy/cgi-bin/user/info?openid=o1",
            Some(BACKEND_KEY),
        )
        .await;
    assert_eq!(status, 504, "{}", json(&body));
    assert_eq!(json(&body)["error"], "upstream_timeout");
    app.fake.inject_at(Endpoint::Api, Fault::Drop, 1);
    let token = app.shop_token().await;
    let (status, _, body) = app
        .get_raw(
            &format!("/cgi-bin/user/info?access_token={token}&openid=o1"),
            None,
        )
        .await;
    assert_eq!(status, 502);
    assert_eq!(json(&body)["errcode"], -1);
    assert_eq!(
        app.metric(r#"wxtoken_proxy_requests_total{app="shop",result="upstream_error"}"#)
            .await,
        Some(2.0)
    );
}

/// The real binary at the most verbose level, through the pass-through, the proxy route, a
/// retry and a login: no token, client key or AppSecret in its log, not even in a query string.
#[actix_web::test]
async fn the_binary_logs_no_token_key_or_secret_of_a_forwarded_call() {
    let spec = Spec::default();
    let fake = start_fake_with(&spec, &[], &[(CORPID, CORP_SECRET)]).await;
    let dir = tempfile::tempdir().unwrap();
    let (child, base, log) = crate::support::process::serve_at_trace(
        dir.path(),
        &format!(
            "[upstream]\nbase_url = \"{}\"\nwecom_base_url = \"{}\"\nmin_token_lifetime_secs = 2\n[refresh]\nmin_interval_secs = 0\n[store]\npath = {}\n{}",
            fake.base_url(),
            fake.base_url(),
            toml::Value::String(dir.path().join("s.redb").display().to_string()),
            apps_and_clients(""),
        ),
    );
    let http = client();
    let get = |url: String, key: Option<&'static str>| {
        let http = http.clone();
        async move {
            let mut req = http.get(url);
            if let Some(k) = key {
                req = req.insert_header(("Authorization", format!("Bearer {k}")));
            }
            let mut resp = req.send().await.expect("sent");
            let body = resp.body().await.expect("body");
            (resp.status().as_u16(), json(&body))
        }
    };
    let (_, first) = get(format!("{base}/v1/apps/shop/token"), Some(BILLING_KEY)).await;
    let first = first["access_token"].as_str().unwrap().to_string();
    rotate_behind_wxtoken(&fake).await;
    let (status, _) = get(
        format!("{base}/cgi-bin/user/info?access_token={first}&openid=o1"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = get(
        format!("{base}/v1/apps/shop/proxy/cgi-bin/menu/get"),
        Some(BACKEND_KEY),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = get(
        format!(
            "{base}/sns/jscode2session?appid={SHOP_APPID}&secret={BILLING_KEY}&js_code=c9&grant_type=authorization_code"
        ),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, second) = get(format!("{base}/v1/apps/shop/token"), Some(BILLING_KEY)).await;
    let second = second["access_token"].as_str().unwrap().to_string();
    assert_ne!(first, second, "the call was retried with a new token");
    drop(child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("token rejected; repeating the call"),
        "the log says what happened"
    );
    for secret in [
        first.as_str(),
        second.as_str(),
        BILLING_KEY,
        BACKEND_KEY,
        SHOP_SECRET,
        CORP_SECRET,
    ] {
        assert!(
            !text.contains(secret),
            "the log holds a secret of {} bytes ({} bytes of log)",
            secret.len(),
            text.len()
        );
    }
}

/// A stalled chunked body on a gateway path: a refusal is answered at once and the connection
/// closed (never drained for as long as the sender likes), and a call that would be forwarded
/// gets its 408 after `[proxy] timeout_secs` (3 s here).
#[actix_web::test]
async fn a_stalled_body_never_holds_a_gateway_connection() {
    use crate::support::raw_http::{blocking, read_answer, send};
    let app = gateway("timeout_secs = 3").await;
    let token = app.shop_token().await;
    let addr = app.base.trim_start_matches("http://").parse().unwrap();
    let stalled = |path: String| {
        blocking(move || {
            let start = std::time::Instant::now();
            let mut s = send(
                addr,
                format!(
                    "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                     Transfer-Encoding: chunked\r\n\r\n10\r\n{{\"touser"
                )
                .as_bytes(),
            );
            let mut a = read_answer(&mut s, Duration::from_secs(10));
            a.elapsed = start.elapsed();
            a
        })
    };
    let refused = stalled("/cgi-bin/message/custom/send".into()).await;
    assert_eq!(refused.body["errcode"], 41001, "{}", refused.head);
    assert!(refused.closed, "the connection stays open");
    // Answered and closed well before the body deadline (actix-web's own shutdown of the
    // connection takes up to a second).
    assert!(
        refused.elapsed < Duration::from_millis(2500),
        "{:?}",
        refused.elapsed
    );
    let late = stalled(format!("/cgi-bin/message/custom/send?access_token={token}")).await;
    assert_eq!(late.status, 408, "{}", late.head);
    assert!(late.closed, "the connection stays open");
    assert!(
        late.elapsed >= Duration::from_millis(2900) && late.elapsed < Duration::from_secs(9),
        "{:?}",
        late.elapsed
    );
    assert_eq!(app.fake.api_calls("/cgi-bin/message/custom/send"), 0);
}

/// `[proxy] max_concurrent` calls at WeChat and more waiting: a call that finds no free slot
/// within the call timeout is a 503, while token refreshes (which have a pool of their own) go
/// on. One slot here, two slow calls holding it in turn, and a third queued behind them.
#[actix_web::test]
async fn a_full_gateway_answers_503_and_never_holds_up_a_refresh() {
    let app = gateway("max_concurrent = 1\ntimeout_secs = 1").await;
    let token = app.shop_token().await;
    app.fake
        .inject_at(Endpoint::Api, Fault::Slow(Duration::from_secs(3)), 2);
    async fn call(app: &TestApp) -> (u16, actix_web::http::header::HeaderMap, Bytes) {
        app.get_raw(
            "/v1/apps/shop/proxy/cgi-bin/user/info?openid=o1",
            Some(BACKEND_KEY),
        )
        .await
    }
    // The first call has its slot and is at WeChat.
    let first_at_wechat = |app: &TestApp| {
        let fake = app.fake.clone();
        async move {
            let reached = eventually(Duration::from_secs(5), || {
                let n = fake.calls(Endpoint::Api);
                async move { n == 1 }
            })
            .await;
            assert!(reached, "the first call never reached WeChat");
        }
    };
    let (first, second, third, refreshed) = tokio::join!(
        call(&app),
        async {
            first_at_wechat(&app).await;
            call(&app).await
        },
        async {
            first_at_wechat(&app).await;
            // Behind the second in the slot queue, which is first come, first served.
            actix_web::rt::time::sleep(Duration::from_millis(200)).await;
            call(&app).await
        },
        async {
            first_at_wechat(&app).await;
            // Rejected for real: WeChat is asked, and the refetch goes ahead.
            app.fake.kill_token(&token);
            app.invalidate_shop(&token).await
        },
    );
    // The first two reached WeChat in turn and timed out there; the third never got a slot.
    assert_eq!(first.0, 504, "{}", json(&first.2));
    assert_eq!(second.0, 504, "{}", json(&second.2));
    assert_eq!(third.0, 503, "{}", json(&third.2));
    assert_eq!(json(&third.2)["error"], "unavailable");
    assert_eq!(app.fake.calls(Endpoint::Api), 2);
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert_ne!(refreshed.body["access_token"], token.as_str());
    assert_eq!(
        app.metric(r#"wxtoken_proxy_requests_total{app="shop",result="refused"}"#)
            .await,
        Some(1.0)
    );
}

/// A prefix from `[proxy] extra_prefixes` is forwarded like WeChat's own, on both fronts;
/// without it the same paths are wxtoken's 404 and 400. (The fake has no such API and answers
/// its own 404 page, which is how a call that reached it is told apart.)
#[actix_web::test]
async fn extra_prefixes_are_forwarded_like_wechats_own() {
    for extra in [true, false] {
        let app = gateway(if extra {
            r#"extra_prefixes = ["/express/"]"#
        } else {
            ""
        })
        .await;
        let token = app.shop_token().await;
        let before = app.fake.calls(Endpoint::Api);
        let (status, headers, body) = app
            .raw(
                "POST",
                &format!("/express/business/order/add?access_token={token}"),
                None,
                &[("content-type", "application/json")],
                b"{}".to_vec(),
            )
            .await;
        let (proxy_status, _, proxy_body) = app
            .get_raw(
                "/v1/apps/shop/proxy/express/business/path/get",
                Some(BACKEND_KEY),
            )
            .await;
        let fake_page = |b: &Bytes| String::from_utf8_lossy(b).contains("<h1>404 Not Found</h1>");
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
        if extra {
            assert_eq!(status, 404);
            assert!(fake_page(&body), "{body:?}");
            assert_eq!(content_type, Some("text/html; charset=utf-8"));
            assert_eq!(proxy_status, 404);
            assert!(fake_page(&proxy_body), "{proxy_body:?}");
        } else {
            assert_eq!(status, 404);
            assert!(!fake_page(&body), "{body:?}");
            assert_eq!(json(&body)["error"], "not_found");
            assert_eq!(proxy_status, 400, "{}", json(&proxy_body));
            assert!(!fake_page(&proxy_body));
        }
        assert_eq!(
            app.fake.calls(Endpoint::Api),
            before,
            "no business API was called"
        );
    }
}
