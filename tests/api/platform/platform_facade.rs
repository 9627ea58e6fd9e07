//! The Open Platform's pre-auth links and its WeChat-compatible facade, over real HTTP with the
//! fake WeChat: links built around a pre-auth code the fake accepts, the component token handed
//! to a client key without any call upstream, and authorizer tokens for the component token
//! wxtoken issued, with a placeholder in place of the refresh token.

use std::time::Duration;

use serde_json::json;
use wxtoken::fake::{Endpoint, Fault};
use wxtoken::http::component_facade::PLACEHOLDER_REFRESH_TOKEN;

use crate::support::facade::{
    authorized_shop, facade_component_token, spawn_facade, spawn_facade_with, FACADE_KEY,
    PROXY_KEY, SHOP,
};
use crate::support::helpers::*;
use crate::support::platform::{AES_KEY, COMPONENT, COMPONENT_SECRET as SECRET, MSG_TOKEN};

async fn preauth(app: &TestApp, body: serde_json::Value) -> Answer {
    app.post(
        "/v1/platforms/saas/preauth",
        Some(FACADE_KEY),
        body.to_string(),
    )
    .await
}

async fn facade_authorizer_token(app: &TestApp, query: &str, appid: &str) -> Answer {
    app.post(
        &format!("/cgi-bin/component/api_authorizer_token?{query}"),
        None,
        json!({
            "component_appid": COMPONENT,
            "authorizer_appid": appid,
            "authorizer_refresh_token": PLACEHOLDER_REFRESH_TOKEN,
        })
        .to_string(),
    )
    .await
}

#[actix_web::test]
async fn preauth_links_carry_a_code_the_fake_accepts_once() {
    let app = spawn_facade().await;
    let answer = preauth(
        &app,
        json!({"redirect_uri": "https://shop.example.com/done?x=1", "auth_type": 2, "biz_appid": SHOP}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["platform"], "saas");
    assert!(answer.body["expires_in"].as_u64().unwrap() > 0);
    let code = answer.body["pre_auth_code"].as_str().unwrap().to_string();
    let encoded_code: String = code
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let params = format!(
        "component_appid={COMPONENT}&pre_auth_code={encoded_code}\
         &redirect_uri=https%3A%2F%2Fshop.example.com%2Fdone%3Fx%3D1&auth_type=2&biz_appid={SHOP}"
    );
    assert_eq!(
        answer.body["pc_url"].as_str().unwrap(),
        format!("https://mp.weixin.qq.com/cgi-bin/componentloginpage?{params}")
    );
    assert_eq!(
        answer.body["mobile_url"].as_str().unwrap(),
        format!(
            "https://open.weixin.qq.com/wxaopen/safe/bindcomponent?action=bindcomponent\
             &no_scan=1&{params}#wechat_redirect"
        )
    );
    assert_eq!(answer.headers.get("cache-control").unwrap(), "no-store");
    // The merchant authorizes with it: the fake accepts the code once.
    app.fake
        .authorize(COMPONENT, SHOP, &[1], Some(&code))
        .expect("the pre-auth code is one WeChat issued");
    assert!(app
        .fake
        .authorize(COMPONENT, SHOP, &[1], Some(&code))
        .is_err());
    assert_eq!(app.fake.calls(Endpoint::CreatePreauthcode), 1);
}

#[actix_web::test]
async fn preauth_refuses_bad_input_before_any_call_upstream() {
    let app = spawn_facade().await;
    for body in [
        json!({"redirect_uri": "/relative"}),
        json!({"redirect_uri": "ftp://example.com/"}),
        json!({"redirect_uri": "https://"}),
        json!({"redirect_uri": "https://example.com/", "auth_type": 4}),
        json!({"redirect_uri": "https://example.com/", "auth_type": "3"}),
        json!({"redirect_uri": "https://example.com/", "biz_appid": "not an appid"}),
        json!({"redirect_uri": "https://example.com/", "state": "x"}),
        json!({}),
    ] {
        let answer = preauth(&app, body.clone()).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        assert_eq!(answer.body["error"], "bad_request", "{body}");
    }
    assert_eq!(app.fake.calls(Endpoint::CreatePreauthcode), 0);
    // Auth as for every platform route: 401, then 404.
    let body = json!({"redirect_uri": "https://example.com/"}).to_string();
    let unauth = app
        .post("/v1/platforms/saas/preauth", None, body.clone())
        .await;
    assert_eq!(unauth.status, 401);
    let unknown = app
        .post("/v1/platforms/nope/preauth", Some(FACADE_KEY), body)
        .await;
    assert_eq!(unknown.status, 404);
    // Without optional fields: both kinds of account, no biz_appid.
    let plain = preauth(&app, json!({"redirect_uri": "http://127.0.0.1:9/cb"})).await;
    assert_eq!(plain.status, 200, "{}", plain.body);
    let pc = plain.body["pc_url"].as_str().unwrap();
    assert!(pc.ends_with("&auth_type=3"), "{pc}");
}

#[actix_web::test]
async fn the_facade_hands_the_shared_component_token_to_a_client_key_and_never_calls_wechat() {
    let app = spawn_facade().await;
    let minted = app.fake.component_tokens_minted(COMPONENT);
    let calls = app.fake.calls(Endpoint::ComponentToken);
    let answer = facade_component_token(&app, FACADE_KEY, "a-ticket-the-sdk-made-up").await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.body["component_access_token"].as_str(),
        app.fake.current_component_token(COMPONENT).as_deref(),
        "{}",
        answer.body
    );
    assert!(answer.body["expires_in"].as_u64().unwrap() > 0);
    assert!(answer.body.get("errcode").is_none());

    // A wrong key, an unknown component, a missing key: WeChat's errcodes.
    let wrong = facade_component_token(&app, "not-a-client-key", "t").await;
    assert_eq!(wrong.status, 200);
    assert_eq!(wrong.body["errcode"], 40125, "{}", wrong.body);
    assert!(!wrong.body.to_string().contains("not-a-client-key"));
    let other = app
        .post(
            "/cgi-bin/component/api_component_token",
            None,
            json!({"component_appid": "wx00000000000000aa", "component_appsecret": FACADE_KEY})
                .to_string(),
        )
        .await;
    assert_eq!(other.body["errcode"], 61011, "{}", other.body);
    let missing = app
        .post(
            "/cgi-bin/component/api_component_token",
            None,
            json!({"component_appid": COMPONENT}).to_string(),
        )
        .await;
    assert_eq!(missing.body["errcode"], 41004, "{}", missing.body);
    let garbage = app
        .post("/cgi-bin/component/api_component_token", None, "[1,2]")
        .await;
    assert_eq!(garbage.body["errcode"], 47001, "{}", garbage.body);

    // None of it reached WeChat, and the ticket in the body was never used.
    assert_eq!(app.fake.component_tokens_minted(COMPONENT), minted);
    assert_eq!(app.fake.calls(Endpoint::ComponentToken), calls);
}

#[actix_web::test]
async fn the_facade_serves_authorizer_tokens_for_the_component_token_it_issued() {
    let app = spawn_facade().await;
    authorized_shop(&app, &[1]).await;
    let issued = facade_component_token(&app, FACADE_KEY, "").await.body["component_access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let real_refresh = app
        .fake
        .authorizer_refresh_token(COMPONENT, SHOP)
        .expect("a refresh token");
    let current = app.fake.current_authorizer_token(COMPONENT, SHOP);
    let minted = app.fake.authorizer_tokens_minted(COMPONENT, SHOP);
    for name in ["component_access_token", "access_token"] {
        let answer = facade_authorizer_token(&app, &format!("{name}={issued}"), SHOP).await;
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.body["authorizer_access_token"].as_str(),
            current.as_deref(),
            "{name}: {}",
            answer.body
        );
        assert!(answer.body["expires_in"].as_u64().unwrap() > 0);
        assert_eq!(
            answer.body["authorizer_refresh_token"],
            PLACEHOLDER_REFRESH_TOKEN
        );
        assert!(!answer.body.to_string().contains(&real_refresh));
    }
    // The shared token: no new one minted for any of it.
    assert_eq!(app.fake.authorizer_tokens_minted(COMPONENT, SHOP), minted);

    let unknown = facade_authorizer_token(&app, "component_access_token=made-up", SHOP).await;
    assert_eq!(unknown.body["errcode"], 40001, "{}", unknown.body);
    let none = facade_authorizer_token(&app, "", SHOP).await;
    assert_eq!(none.body["errcode"], 41001, "{}", none.body);
    let stranger = facade_authorizer_token(
        &app,
        &format!("component_access_token={issued}"),
        "wx00000000000000ff",
    )
    .await;
    assert_eq!(stranger.body["errcode"], 61003, "{}", stranger.body);

    // A revoked account: WeChat's "not authorized".
    app.fake
        .unauthorize_and_push(COMPONENT, SHOP)
        .await
        .expect("pushed");
    let revoked = facade_authorizer_token(&app, &format!("access_token={issued}"), SHOP).await;
    assert_eq!(revoked.body["errcode"], 61003, "{}", revoked.body);
}

/// 4 s tokens, refreshed at half-life: the token a client got just before a refresh keeps
/// working until it expires, and one two refreshes old is refused.
#[actix_web::test]
async fn the_component_token_before_the_current_one_is_accepted_until_it_expires() {
    let app = spawn_facade_with(4).await;
    authorized_shop(&app, &[1]).await;
    let issued_at = std::time::Instant::now();
    let token = |answer: Answer| {
        answer.body["component_access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let first = token(facade_component_token(&app, FACADE_KEY, "").await);
    assert!(!first.is_empty());
    // The server moves on to the next token.
    assert!(
        eventually(Duration::from_secs(5), || async {
            let now = token(facade_component_token(&app, FACADE_KEY, "").await);
            !now.is_empty() && now != first
        })
        .await,
        "the component token was refreshed"
    );
    let answer =
        facade_authorizer_token(&app, &format!("component_access_token={first}"), SHOP).await;
    assert!(
        answer.body["authorizer_access_token"].is_string(),
        "the previous token still works: {}",
        answer.body
    );
    // Past its expiry and two refreshes on, it is refused.
    let wait = Duration::from_millis(4500).saturating_sub(issued_at.elapsed());
    tokio::time::sleep(wait).await;
    let second_seen = token(facade_component_token(&app, FACADE_KEY, "").await);
    assert!(
        eventually(Duration::from_secs(5), || async {
            let now = token(facade_component_token(&app, FACADE_KEY, "").await);
            !now.is_empty() && now != second_seen && now != first
        })
        .await
    );
    let answer =
        facade_authorizer_token(&app, &format!("component_access_token={first}"), SHOP).await;
    let code = answer.body["errcode"].as_i64();
    assert!(
        matches!(code, Some(40001 | 42001)),
        "an old token is refused: {}",
        answer.body
    );
}

#[actix_web::test]
async fn an_authorized_account_is_called_through_both_gateway_fronts() {
    let app = spawn_facade().await;
    let token = authorized_shop(&app, &[1]).await;
    // The proxy route adds the account's token; a client without `proxy = true` may not.
    let proxied =
        format!("/v1/platforms/saas/authorizers/{SHOP}/proxy/cgi-bin/user/info?openid=o1");
    let answer = app.get(&proxied, Some(PROXY_KEY)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["openid"], "o1");
    assert_eq!(app.get(&proxied, Some(FACADE_KEY)).await.status, 403);
    let unknown = "/v1/platforms/saas/authorizers/wx0000000000000000/proxy/cgi-bin/user/info";
    assert_eq!(app.get(unknown, Some(PROXY_KEY)).await.status, 404);
    // An SDK holding the account's token (from the component facade) goes through the
    // pass-through, which knows the token as this account's.
    let answer = app
        .get(
            &format!("/cgi-bin/user/info?access_token={token}&openid=o2"),
            None,
        )
        .await;
    assert_eq!(answer.body["openid"], "o2", "{}", answer.body);
    let sent: Vec<String> = app
        .fake
        .api_requests("/cgi-bin/user/info")
        .iter()
        .filter_map(|r| r.query_param("access_token").map(str::to_string))
        .collect();
    assert_eq!(sent, [token.clone(), token]);
    assert_eq!(
        app.metric(r#"wxtoken_proxy_requests_total{app="platform:saas:authorizers",result="ok"}"#)
            .await,
        Some(2.0)
    );
}

/// `api_create_preauthcode` through the pass-through, as an SDK's component client makes it.
async fn preauthcode_through(app: &TestApp, query: &str) -> Answer {
    app.post(
        &format!("/cgi-bin/component/api_create_preauthcode?{query}"),
        None,
        json!({ "component_appid": COMPONENT }).to_string(),
    )
    .await
}

/// An SDK's component client with its base URL at wxtoken: the component token from the facade
/// carries its component calls (and web OAuth on behalf of an account) through the
/// pass-through, in either parameter name, and a component token rotated behind wxtoken's
/// back is replaced and the call repeated once.
#[actix_web::test]
async fn component_calls_go_through_the_pass_through_with_the_component_token() {
    let app = spawn_facade().await;
    let token = facade_component_token(&app, FACADE_KEY, "").await.body["component_access_token"]
        .as_str()
        .unwrap()
        .to_string();
    for param in ["component_access_token", "access_token"] {
        let answer = preauthcode_through(&app, &format!("{param}={token}")).await;
        assert!(answer.body["pre_auth_code"].is_string(), "{}", answer.body);
    }
    assert_eq!(app.fake.calls(Endpoint::CreatePreauthcode), 2);
    // Web OAuth on behalf of the account: the business server holds only what the facade gave.
    let oauth = app
        .get(
            &format!(
                "/sns/oauth2/component/access_token?appid={SHOP}&code=web-code-1\
                 &grant_type=authorization_code&component_appid={COMPONENT}\
                 &component_access_token={token}"
            ),
            None,
        )
        .await;
    assert!(oauth.body["openid"].is_string(), "{}", oauth.body);
    let sent = app.fake.api_requests("/sns/oauth2/component/access_token");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].query_param("component_access_token"),
        Some(token.as_str())
    );

    // Two mints behind wxtoken's back: the token it holds is dead at WeChat.
    let ticket = app.fake.current_verify_ticket(COMPONENT).expect("a ticket");
    for _ in 0..2 {
        let mut resp = app
            .http
            .post(format!(
                "{}/cgi-bin/component/api_component_token",
                app.fake.base_url()
            ))
            .send_json(&json!({
                "component_appid": COMPONENT,
                "component_appsecret": SECRET,
                "component_verify_ticket": ticket,
            }))
            .await
            .expect("fake answers");
        let minted: serde_json::Value = resp.json().await.expect("json");
        assert!(minted["component_access_token"].is_string(), "{minted}");
    }
    let answer = preauthcode_through(&app, &format!("component_access_token={token}")).await;
    assert!(answer.body["pre_auth_code"].is_string(), "{}", answer.body);
    assert_eq!(
        app.fake.calls(Endpoint::CreatePreauthcode),
        4,
        "the rejected call and its repeat"
    );
    let fresh = app
        .fake
        .current_component_token(COMPONENT)
        .expect("current");
    assert_eq!(
        facade_component_token(&app, FACADE_KEY, "").await.body["component_access_token"],
        fresh.as_str(),
        "wxtoken fetched the token the repeat was made with"
    );
    assert_eq!(
        app.metric(r#"wxtoken_proxy_retries_total{app="platform:saas"}"#)
            .await,
        Some(1.0)
    );

    // Never reaching WeChat: a component token wxtoken did not issue.
    let answer = preauthcode_through(&app, "component_access_token=not-one-of-ours").await;
    assert_eq!(answer.body["errcode"], 40001, "{}", answer.body);
    assert_eq!(app.fake.calls(Endpoint::CreatePreauthcode), 4);
}

/// The component calls that answer with refresh tokens are forwarded, and their answers come
/// back with the facade's placeholder in place of each one: the real refresh token never
/// leaves wxtoken, everything else in the answer does.
#[actix_web::test]
async fn authorizer_info_and_listing_come_back_without_refresh_tokens() {
    let app = spawn_facade().await;
    authorized_shop(&app, &[1, 2]).await;
    let real = app
        .fake
        .authorizer_refresh_token(COMPONENT, SHOP)
        .expect("a refresh token at WeChat");
    let token = facade_component_token(&app, FACADE_KEY, "").await.body["component_access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let info = app
        .post(
            &format!("/cgi-bin/component/api_get_authorizer_info?component_access_token={token}"),
            None,
            json!({ "component_appid": COMPONENT, "authorizer_appid": SHOP }).to_string(),
        )
        .await;
    assert_eq!(info.status, 200);
    let auth = &info.body["authorization_info"];
    assert_eq!(auth["authorizer_appid"], SHOP, "{}", info.body);
    assert_eq!(auth["authorizer_refresh_token"], PLACEHOLDER_REFRESH_TOKEN);
    assert_eq!(auth["func_info"].as_array().map(Vec::len), Some(2));
    assert!(info.body["authorizer_info"]["nick_name"].is_string());
    assert!(!info.body.to_string().contains(&real));

    let listing = app
        .post(
            &format!("/cgi-bin/component/api_get_authorizer_list?access_token={token}"),
            None,
            json!({ "component_appid": COMPONENT, "offset": 0, "count": 500 }).to_string(),
        )
        .await;
    assert_eq!(listing.body["total_count"], 1, "{}", listing.body);
    let entry = &listing.body["list"][0];
    assert_eq!(entry["authorizer_appid"], SHOP);
    assert_eq!(entry["refresh_token"], PLACEHOLDER_REFRESH_TOKEN);
    assert!(!listing.body.to_string().contains(&real));
    assert_eq!(app.fake.calls(Endpoint::GetAuthorizerInfo), 1);
    // What wxtoken keeps is the real one: the account's token still refreshes.
    assert_eq!(
        app.fake
            .authorizer_refresh_token(COMPONENT, SHOP)
            .as_deref(),
        Some(real.as_str())
    );
    // An answer that cannot be checked is not sent on.
    app.fake
        .inject_at(Endpoint::GetAuthorizerInfo, Fault::NotJson, 1);
    let unchecked = app
        .post(
            &format!("/cgi-bin/component/api_get_authorizer_info?component_access_token={token}"),
            None,
            json!({ "component_appid": COMPONENT, "authorizer_appid": SHOP }).to_string(),
        )
        .await;
    assert_eq!(unchecked.status, 502, "{}", unchecked.body);
    assert_eq!(unchecked.body["errcode"], -1);
}

/// `api_query_auth` as an SDK makes it on the redirect: wxtoken exchanges the code itself,
/// answers with the account's shared token and the placeholder, and exchanges a code once
/// whichever way it arrives (the push, the facade, `POST /authorizers`).
#[actix_web::test]
async fn the_code_exchange_is_wxtokens_own_and_made_once_per_code() {
    const CAFE: &str = "wx6c4b2d0e8f9a7b53";
    let app = spawn_facade().await;
    let token = facade_component_token(&app, FACADE_KEY, "").await.body["component_access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let query_auth = |code: String| {
        let app = &app;
        let token = token.clone();
        async move {
            app.post(
                &format!("/cgi-bin/component/api_query_auth?component_access_token={token}"),
                None,
                json!({ "component_appid": COMPONENT, "authorization_code": code }).to_string(),
            )
            .await
        }
    };

    // The redirect's code, with no push: exchanged by the facade.
    let authorized = app
        .fake
        .authorize(COMPONENT, CAFE, &[1, 7], None)
        .expect("authorized");
    let answer = query_auth(authorized.authorization_code.clone()).await;
    let info = &answer.body["authorization_info"];
    assert_eq!(info["authorizer_appid"], CAFE, "{}", answer.body);
    assert_eq!(info["authorizer_refresh_token"], PLACEHOLDER_REFRESH_TOKEN);
    assert_eq!(
        info["func_info"],
        json!([{ "funcscope_category": { "id": 1 } }, { "funcscope_category": { "id": 7 } }])
    );
    let served = app
        .get(
            &format!("/v1/platforms/saas/authorizers/{CAFE}/token"),
            Some(FACADE_KEY),
        )
        .await;
    assert_eq!(served.body["access_token"], info["authorizer_access_token"]);
    assert_eq!(app.fake.calls(Endpoint::QueryAuth), 1);

    // Pushed, then sent by the SDK and posted to wxtoken's route: one exchange between them.
    let (authorized, _) = app
        .fake
        .authorize_and_push(COMPONENT, SHOP, &[1])
        .await
        .expect("authorized");
    let answer = query_auth(authorized.authorization_code.clone()).await;
    assert_eq!(
        answer.body["authorization_info"]["authorizer_appid"], SHOP,
        "{}",
        answer.body
    );
    let posted = app
        .post(
            "/v1/platforms/saas/authorizers",
            Some(FACADE_KEY),
            json!({ "authorization_code": authorized.authorization_code }).to_string(),
        )
        .await;
    assert_eq!(posted.status, 200, "{}", posted.body);
    assert_eq!(app.fake.calls(Endpoint::QueryAuth), 2);

    // A code WeChat never issued, and a component token wxtoken did not hand out.
    let answer = query_auth("queryauthcode@@@forged".into()).await;
    assert_eq!(answer.body["errcode"], 61009, "{}", answer.body);
    let answer = app
        .post(
            "/cgi-bin/component/api_query_auth?component_access_token=forged",
            None,
            json!({ "component_appid": COMPONENT, "authorization_code": "x" }).to_string(),
        )
        .await;
    assert_eq!(answer.body["errcode"], 40001, "{}", answer.body);
    assert_eq!(
        app.fake.calls(Endpoint::QueryAuth),
        3,
        "only the forged code reached WeChat"
    );
}

/// A business server that never holds the component token: the platform's proxy route adds
/// it, for component calls and for web OAuth on behalf of an account; the client needs
/// `proxy = true`, and the token endpoints are refused.
#[actix_web::test]
async fn component_calls_through_the_platform_proxy_route_carry_the_component_token() {
    let app = spawn_facade().await;
    let proxied = "/v1/platforms/saas/proxy/cgi-bin/component/api_create_preauthcode";
    let body = json!({ "component_appid": COMPONENT }).to_string();
    let answer = app.post(proxied, Some(PROXY_KEY), body.clone()).await;
    assert!(answer.body["pre_auth_code"].is_string(), "{}", answer.body);
    let current = app
        .fake
        .current_component_token(COMPONENT)
        .expect("a token");
    let sent = app.fake.api_requests("/sns/oauth2/component/access_token");
    assert!(sent.is_empty());
    let oauth = app
        .get(
            &format!(
                "/v1/platforms/saas/proxy/sns/oauth2/component/access_token?appid={SHOP}\
                 &code=web-code-2&grant_type=authorization_code&component_appid={COMPONENT}"
            ),
            Some(PROXY_KEY),
        )
        .await;
    assert!(oauth.body["openid"].is_string(), "{}", oauth.body);
    let sent = app.fake.api_requests("/sns/oauth2/component/access_token");
    assert_eq!(
        sent[0].query_param("component_access_token"),
        Some(current.as_str())
    );
    assert_eq!(
        app.post(proxied, Some(FACADE_KEY), body.clone())
            .await
            .status,
        403
    );
    let token_route = "/v1/platforms/saas/proxy/cgi-bin/component/api_component_token";
    assert_eq!(
        app.post(token_route, Some(PROXY_KEY), body).await.status,
        400
    );
    assert_eq!(app.fake.calls(Endpoint::CreatePreauthcode), 1);
    assert_eq!(
        app.metric(r#"wxtoken_proxy_requests_total{app="platform:saas",result="ok"}"#)
            .await,
        Some(2.0)
    );
}

/// wechatpy's component client (and the account client it makes) with their API base at
/// wxtoken: the SDK's own flow, from the component token to a business call of the account.
const WECHATPY_COMPONENT: &str = r#"
import sys, json
from wechatpy.component import WeChatComponent, WeChatComponentClient
base, component_appid, key, msg_token, aes_key, code, appid = sys.argv[1:8]
WeChatComponentClient.API_BASE_URL = base + "/cgi-bin/"
class ThroughWxtoken(WeChatComponent):
    API_BASE_URL = base + "/cgi-bin"
c = ThroughWxtoken(component_appid, key, msg_token, aes_key)
# wxtoken keeps its own ticket; the SDK wants one in its session all the same.
c.session.set("component_verify_ticket", "ticket-the-sdk-never-needs")
pre = c.create_preauthcode()
auth = c.query_auth(code)
info = c.get_authorizer_info(appid)
account = c.get_client_by_appid(appid)
user = account.user.get("openid-7")
print(json.dumps({"pre": pre, "auth": auth, "info": info, "user": user,
                  "stored_refresh_token": c.session.get(appid + "_refresh_token")}))
"#;

#[actix_web::test]
async fn wechatpys_component_client_works_with_its_base_url_at_wxtoken() {
    crate::support::wechatpy::require_wechatpy();
    const CAFE: &str = "wx6c4b2d0e8f9a7b53";
    let app = spawn_facade().await;
    let authorized = app
        .fake
        .authorize(COMPONENT, CAFE, &[1], None)
        .expect("authorized");
    let out = crate::support::wechatpy::python(
        WECHATPY_COMPONENT,
        vec![
            app.base.clone(),
            COMPONENT.into(),
            FACADE_KEY.into(),
            MSG_TOKEN.into(),
            AES_KEY.into(),
            authorized.authorization_code,
            CAFE.into(),
        ],
    )
    .await;
    let sdk: serde_json::Value = serde_json::from_str(&out).expect("the SDK printed JSON");
    assert!(sdk["pre"]["pre_auth_code"].is_string(), "{sdk}");
    assert_eq!(sdk["auth"]["authorization_info"]["authorizer_appid"], CAFE);
    assert_eq!(sdk["stored_refresh_token"], PLACEHOLDER_REFRESH_TOKEN);
    assert_eq!(
        sdk["info"]["authorization_info"]["authorizer_refresh_token"],
        PLACEHOLDER_REFRESH_TOKEN
    );
    assert_eq!(sdk["user"]["openid"], "openid-7", "{sdk}");
    // The account's business call went out with the token wxtoken serves for it.
    let served = app
        .get(
            &format!("/v1/platforms/saas/authorizers/{CAFE}/token"),
            Some(FACADE_KEY),
        )
        .await;
    let sent = app.fake.api_requests("/cgi-bin/user/info");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].query_param("access_token"),
        served.body["access_token"].as_str()
    );
    // The SDK never called WeChat for a token: wxtoken fetched none beyond its own.
    assert_eq!(app.fake.calls(Endpoint::QueryAuth), 1);
    assert_eq!(app.fake.calls(Endpoint::AuthorizerToken), 0);
}
