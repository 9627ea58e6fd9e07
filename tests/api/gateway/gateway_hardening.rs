//! The gateway under attack, over real HTTP against the fake WeChat in its lenient and hostile
//! modes: strangers without a key cannot hold its slots, no spelling of a path reaches a token
//! route or carries a refresh token back, tokens go only in their own kind's parameter, login
//! answers never carry the AppSecret, and WeChat's paths answer in WeChat's format.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use wxtoken::fake::Endpoint;
use wxtoken::http::component_facade::PLACEHOLDER_REFRESH_TOKEN;

use crate::support::facade::{
    authorized_shop, facade_component_token, spawn_facade, FACADE_KEY, PROXY_KEY, SHOP,
};
use crate::support::gateway::{
    apps_and_clients, gateway, gateway_builder, gateway_with_jsapi_ticket, json, BACKEND_KEY,
};
use crate::support::helpers::*;
use crate::support::platform::COMPONENT;

/// The server's address, for raw sockets.
fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_string()
}

/// Sends `head` (and nothing after it) on a new connection and reads the answer's status line
/// and whatever body arrives with it; `None` when nothing arrives within `within`.
async fn raw_answer(app: &TestApp, head: &str, within: Duration) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr(app)).await.expect("connects");
    s.write_all(head.as_bytes()).await.expect("head sent");
    let mut buf = vec![0u8; 8192];
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, async {
        loop {
            let n = s.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if let Some(at) = text.find("\r\n\r\n") {
                let len = text[..at]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if got.len() >= at + 4 + len {
                    break;
                }
            }
        }
    })
    .await;
    if read.is_err() || got.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&got).to_string();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// A connection that sent `head` and holds it open, sending nothing more.
async fn stalled(app: &TestApp, head: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr(app)).await.expect("connects");
    s.write_all(head.as_bytes()).await.expect("head sent");
    s
}

/// The anonymous web-OAuth calls of strangers have their own small pool and body limit: 40
/// stalled `POST /sns/userinfo` bodies and 10 protocol upgrades leave every slot of the
/// authenticated calls free (before, they held them all and authenticated calls got 503), an
/// upgrade is answered at once, and a stranger's 19 MiB body is refused before it is sent.
#[actix_web::test]
async fn strangers_without_a_key_never_hold_an_authenticated_calls_slot() {
    let app = gateway_builder(&apps_and_clients(
        "max_concurrent = 4\nanonymous_max_concurrent = 2\ntimeout_secs = 3",
    ))
    .adjust(|(settings, _)| settings.server.body_timeout = Duration::from_secs(30))
    .start()
    .await;
    let token = app.shop_token().await;
    let mut held = Vec::new();
    for _ in 0..40 {
        held.push(
            stalled(
                &app,
                "POST /sns/userinfo?access_token=user-token&openid=o1 HTTP/1.1\r\nHost: a\r\n\
                 Content-Length: 1000\r\n\r\n",
            )
            .await,
        );
    }
    // A protocol upgrade's "body" is the rest of the connection: answered at once, unread.
    let upgrade = "GET /sns/userinfo?access_token=u&openid=o1 HTTP/1.1\r\nHost: a\r\n\
                   Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    for _ in 0..10 {
        let (status, body) = raw_answer(&app, upgrade, Duration::from_secs(10))
            .await
            .expect("an upgrade is answered");
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("40097"), "{body}");
    }
    // A stranger's large body is refused from its Content-Length, before it is sent.
    let (status, body) = raw_answer(
        &app,
        "POST /sns/userinfo?access_token=u&openid=o1 HTTP/1.1\r\nHost: a\r\n\
         Content-Length: 19922944\r\n\r\n",
        Duration::from_secs(10),
    )
    .await
    .expect("a large anonymous body is refused at once");
    assert_eq!(status, 413, "{body}");
    // Every authenticated slot is free: four calls at once are forwarded.
    let path = format!("/cgi-bin/user/info?access_token={token}&openid=o1");
    let calls = (0..4).map(|_| app.get_raw(&path, None));
    for (status, _, body) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200, "{}", json(&body));
        assert_eq!(json(&body)["openid"], "o1");
    }
    // So is the proxy front's.
    let (status, _, body) = app
        .get_raw(
            "/v1/apps/shop/proxy/cgi-bin/user/info?openid=o2",
            Some(BACKEND_KEY),
        )
        .await;
    assert_eq!(status, 200, "{}", json(&body));
    assert_eq!(
        app.fake.api_calls("/sns/userinfo"),
        0,
        "nothing went upstream"
    );
    drop(held);
}

/// An upgrade on an authenticated pass-through call and on a proxy route is answered at once
/// too (it used to hold the call until the body timeout's 408).
#[actix_web::test]
async fn upgrades_on_gateway_routes_are_answered_at_once() {
    let app = gateway("timeout_secs = 30").await;
    let token = app.shop_token().await;
    for head in [
        format!(
            "GET /cgi-bin/user/info?access_token={token}&openid=o1 HTTP/1.1\r\nHost: a\r\n\
             Connection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
        ),
        format!(
            "GET /v1/apps/shop/proxy/cgi-bin/user/info?openid=o1 HTTP/1.1\r\nHost: a\r\n\
             Authorization: Bearer {BACKEND_KEY}\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
        ),
    ] {
        let (status, body) = raw_answer(&app, &head, Duration::from_secs(10))
            .await
            .expect("answered");
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("upgrade"), "{body}");
    }
    assert_eq!(app.fake.api_calls("/cgi-bin/user/info"), 0);
}

/// Whether `path` is routed to one of the facade's own token routes: spelled as one once
/// slashes are merged and unreserved characters decoded (the router does both), with no
/// `;params`, no other letter case and no trailing `/`.
fn facade_route(path: &str) -> bool {
    !path.contains(';') && path == path.to_lowercase() && !path.ends_with('/')
}

/// The fake reads `//` as `/` and drops `;params`, as WeChat's front end very likely does:
/// every spelling of a token route is refused in WeChat's format on the pass-through (400 on
/// the proxy route), and none reaches a token endpoint.
#[actix_web::test]
async fn no_spelling_of_a_token_route_is_forwarded() {
    let app = gateway("").await;
    app.fake.set_lenient_paths(true);
    app.shop_token().await;
    let counts = |app: &TestApp| {
        [
            Endpoint::Token,
            Endpoint::StableToken,
            Endpoint::WecomToken,
            Endpoint::ComponentToken,
        ]
        .map(|e| app.fake.calls(e))
    };
    let before = counts(&app);
    let creds = format!("grant_type=client_credential&appid={SHOP_APPID}&secret={SHOP_SECRET}");
    for path in [
        "/cgi-bin//token",
        "/cgi-bin/TOKEN",
        "/cgi-bin/token;x",
        "/cgi-bin/token/",
        "/cgi-bin/%74oken",
        "/cgi-bin//stable_token",
        "/cgi-bin//gettoken",
        "/cgi-bin/component//api_component_token",
        "/cgi-bin/Component/Api_Authorizer_Token",
    ] {
        for method in ["GET", "POST"] {
            // A spelling with `//` is the facade's own route once slashes are merged (and
            // refuses the real AppSecret, as the facade does); any other is refused.
            let (status, _, body) = app
                .raw(method, &format!("{path}?{creds}"), None, &[], vec![])
                .await;
            let errcode = json(&body)["errcode"].as_i64();
            assert!(
                errcode.is_some_and(|c| c != 0),
                "{method} {path}: {status} {}",
                json(&body)
            );
            if !facade_route(path) {
                assert_eq!(errcode, Some(48001), "{method} {path}");
            }
        }
        let (status, _, body) = app
            .get_raw(
                &format!("/v1/apps/shop/proxy{path}?{creds}"),
                Some(BACKEND_KEY),
            )
            .await;
        assert_eq!(status, 400, "proxy {path}: {}", json(&body));
    }
    assert_eq!(counts(&app), before, "no token endpoint was reached");
}

/// An SDK whose base URL ends in `/` calls `//cgi-bin/token`: the facade answers it (WeChat's
/// front end accepts it the same way), and its business calls go through; what wxtoken answers
/// itself on WeChat's paths carries an `errcode`.
#[actix_web::test]
async fn a_base_url_ending_in_a_slash_reaches_the_facade_and_every_answer_has_an_errcode() {
    let app = gateway("").await;
    let shared = app.shop_token().await;
    let minted = app.minted(SHOP_APPID);
    let (status, _, body) = app
        .get_raw(&format!(
                "//cgi-bin/token?grant_type=client_credential&appid={SHOP_APPID}&secret={BILLING_KEY}"
            ), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        json(&body)["access_token"],
        shared.as_str(),
        "{}",
        json(&body)
    );
    let stable = app
        .post(
            "//cgi-bin/stable_token",
            None,
            json!({"grant_type": "client_credential", "appid": SHOP_APPID, "secret": BILLING_KEY})
                .to_string(),
        )
        .await;
    assert_eq!(
        stable.body["access_token"],
        shared.as_str(),
        "{}",
        stable.body
    );
    let (status, _, body) = app
        .get_raw(
            &format!("//cgi-bin/user/info?access_token={shared}&openid=o1"),
            None,
        )
        .await;
    assert_eq!((status, json(&body)["openid"].clone()), (200, "o1".into()));
    assert_eq!(app.minted(SHOP_APPID), minted, "no token was fetched");
    // wxtoken's own answers on WeChat's paths: each with an errcode.
    for (method, path) in [
        ("GET", "//cgi-bin/user/info".to_string()),
        (
            "GET",
            "/cgi-bin/user/info?access_token=not-issued".to_string(),
        ),
        ("GET", "/cgi-bin/gettoken".to_string()),
        ("POST", "//cgi-bin/token".to_string()),
        ("GET", "/cgi-bin/%ff".to_string()),
    ] {
        let (_, _, body) = app.raw(method, &path, None, &[], vec![]).await;
        assert!(
            json(&body)["errcode"].is_i64(),
            "{method} {path}: {}",
            json(&body)
        );
    }
}

/// A token goes only in its own kind's parameter: an app's token as `component_access_token`,
/// a component token as `access_token` on an account's API, both at once, or one given twice
/// are refused without reaching WeChat, so no valid token draws a 40001 (and a refetch).
#[actix_web::test]
async fn a_token_in_another_kinds_parameter_is_refused_before_wechat() {
    let app = spawn_facade().await;
    let account = authorized_shop(&app, &[1]).await;
    let component = facade_component_token(&app, FACADE_KEY, "").await.body
        ["component_access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let before = (
        app.fake.calls(Endpoint::ComponentToken),
        app.fake.calls(Endpoint::AuthorizerToken),
        app.fake.api_calls("/cgi-bin/user/info"),
    );
    for (query, errcode) in [
        (format!("component_access_token={account}&openid=o1"), 40001),
        (format!("access_token={component}&openid=o1"), 40001),
        (
            format!("access_token={account}&component_access_token={component}&openid=o1"),
            40097,
        ),
        (
            format!("access_token={account}&access_token={account}"),
            40097,
        ),
        (format!("access_token={account}&access%5Ftoken=x"), 40097),
    ] {
        let a = app.get(&format!("/cgi-bin/user/info?{query}"), None).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body["errcode"], errcode, "{query}: {}", a.body);
    }
    let after = (
        app.fake.calls(Endpoint::ComponentToken),
        app.fake.calls(Endpoint::AuthorizerToken),
        app.fake.api_calls("/cgi-bin/user/info"),
    );
    assert_eq!(
        before, after,
        "nothing reached WeChat, nothing was refetched"
    );
    // Where WeChat does take the component token as access_token, it goes.
    let a = app
        .post(
            &format!("/cgi-bin/component/api_create_preauthcode?access_token={component}"),
            None,
            json!({ "component_appid": COMPONENT }).to_string(),
        )
        .await;
    assert!(a.body["pre_auth_code"].is_string(), "{}", a.body);
}

/// The calls that answer with refresh tokens, and the token calls, in the spellings a lenient
/// front end reads as theirs: the listing comes back masked on both fronts (or not at all), the
/// code exchange and the token rotation are refused or answered by the facade itself, and no
/// refresh token comes back.
#[actix_web::test]
async fn no_spelling_of_a_component_path_leaks_a_refresh_token_or_spends_a_code() {
    let app = spawn_facade().await;
    app.fake.set_lenient_paths(true);
    authorized_shop(&app, &[1]).await;
    let real = app
        .fake
        .authorizer_refresh_token(COMPONENT, SHOP)
        .expect("a refresh token at WeChat");
    let ct = facade_component_token(&app, FACADE_KEY, "").await.body["component_access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let listing = json!({ "component_appid": COMPONENT, "offset": 0, "count": 500 });
    for path in [
        "/cgi-bin//component/api_get_authorizer_list",
        "/cgi-bin/component//api_get_authorizer_list",
        "/cgi-bin/component/api_get_authorizer_list;x",
        "/cgi-bin/component/API_GET_AUTHORIZER_LIST",
    ] {
        let a = app
            .post(
                &format!("{path}?component_access_token={ct}"),
                None,
                listing.to_string(),
            )
            .await;
        assert!(!a.body.to_string().contains(&real), "{path}: {}", a.body);
        let p = app
            .post(
                &format!("/v1/platforms/saas/proxy{path}"),
                Some(PROXY_KEY),
                listing.to_string(),
            )
            .await;
        assert!(
            !p.body.to_string().contains(&real),
            "proxy {path}: {}",
            p.body
        );
        // Forwarded with the letter case it came with (the fake, as WeChat, has no upper-case
        // route): the others reach the listing and come back masked.
        if path == path.to_lowercase() {
            assert_eq!(
                a.body["list"][0]["refresh_token"], PLACEHOLDER_REFRESH_TOKEN,
                "{path}"
            );
            assert_eq!(
                p.body["list"][0]["refresh_token"],
                PLACEHOLDER_REFRESH_TOKEN
            );
        }
    }
    let rotations = app.fake.calls(Endpoint::AuthorizerToken);
    let exchanges = app.fake.calls(Endpoint::QueryAuth);
    for path in [
        "/cgi-bin/component//api_query_auth",
        "/cgi-bin//component/api_query_auth;x",
        "/cgi-bin/component/API_QUERY_AUTH",
        "/cgi-bin/component//api_authorizer_token",
        "/cgi-bin/component/api_authorizer_token;x",
    ] {
        let body = json!({
            "component_appid": COMPONENT, "authorization_code": "code",
            "authorizer_appid": SHOP, "authorizer_refresh_token": real,
        });
        let a = app
            .post(
                &format!("{path}?component_access_token={ct}"),
                None,
                body.to_string(),
            )
            .await;
        assert!(!a.body.to_string().contains(&real), "{path}: {}", a.body);
        if facade_route(path) {
            // The facade's own route: wxtoken answers it from its state (or exchanges the
            // code itself), with the placeholder for any refresh token.
            assert_ne!(a.body["errcode"], 48001, "{path}: {}", a.body);
        } else {
            assert_eq!(a.body["errcode"], 48001, "{path}: {}", a.body);
        }
        let p = app
            .post(
                &format!("/v1/platforms/saas/proxy{path}"),
                Some(PROXY_KEY),
                body.to_string(),
            )
            .await;
        assert_eq!(p.status, 400, "proxy {path}: {}", p.body);
    }
    assert_eq!(
        app.fake.calls(Endpoint::AuthorizerToken),
        rotations,
        "no token rotated behind wxtoken"
    );
    // Only the facade's own exchange (of the `//` spelling) reached WeChat.
    assert!(app.fake.calls(Endpoint::QueryAuth) <= exchanges + 1);
}

/// An upstream that repeats a refresh token wxtoken holds in any answer to a component call,
/// under a key of any spelling, inside a JSON document in a string or in free text: the value
/// never reaches the caller, on either front.
#[actix_web::test]
async fn a_known_refresh_token_never_leaves_in_any_shape() {
    let app = spawn_facade().await;
    authorized_shop(&app, &[1]).await;
    let real = app
        .fake
        .authorizer_refresh_token(COMPONENT, SHOP)
        .expect("a refresh token at WeChat");
    app.fake.leak_in_component_answers(vec![real.clone()]);
    let ct = facade_component_token(&app, FACADE_KEY, "").await.body["component_access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let preauth = json!({ "component_appid": COMPONENT }).to_string();
    let through = app
        .post(
            &format!("/cgi-bin/component/api_create_preauthcode?component_access_token={ct}"),
            None,
            preauth.clone(),
        )
        .await;
    assert!(
        through.body["pre_auth_code"].is_string(),
        "{}",
        through.body
    );
    assert!(
        through.body["hint0"].is_string(),
        "the fake leaked: {}",
        through.body
    );
    assert!(
        !through.body.to_string().contains(&real),
        "{}",
        through.body
    );
    let proxied = app
        .post(
            "/v1/platforms/saas/proxy/cgi-bin/component/api_create_preauthcode",
            Some(PROXY_KEY),
            preauth,
        )
        .await;
    assert!(
        proxied.body["pre_auth_code"].is_string(),
        "{}",
        proxied.body
    );
    assert!(
        !proxied.body.to_string().contains(&real),
        "{}",
        proxied.body
    );
    let info = app
        .post(
            &format!("/cgi-bin/component/api_get_authorizer_info?component_access_token={ct}"),
            None,
            json!({ "component_appid": COMPONENT, "authorizer_appid": SHOP }).to_string(),
        )
        .await;
    assert_eq!(info.body["authorization_info"]["authorizer_appid"], SHOP);
    assert!(!info.body.to_string().contains(&real), "{}", info.body);
}

/// An upstream that echoes the request back (errmsg, `Location`) on the logins that take the
/// AppSecret: the answer reaches the caller with the client key in its place, on both
/// spellings of the path and on the proxy route.
#[actix_web::test]
async fn login_answers_never_carry_the_appsecret() {
    let app = gateway("").await;
    app.fake.set_echoing_logins(true);
    for path in ["/sns/jscode2session", "/sns/oauth2/access_token/"] {
        let (status, headers, body) = app
            .get_raw(&format!(
                    "{path}?appid={SHOP_APPID}&secret={BILLING_KEY}&js_code=c&code=c&grant_type=authorization_code"
                ), None)
            .await;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, 200);
        assert!(text.contains("hint"), "the fake echoed: {text}");
        assert!(!text.contains(SHOP_SECRET), "{path}: {text}");
        assert!(
            text.contains(BILLING_KEY),
            "the client key stands in: {text}"
        );
        let location = headers.get("location").expect("echoed").to_str().unwrap();
        assert!(!location.contains(SHOP_SECRET), "{location}");
    }
    let (_, headers, body) = app
        .get_raw(&format!(
                "/v1/apps/shop/proxy/sns/jscode2session?appid={SHOP_APPID}&secret={BACKEND_KEY}&js_code=c&grant_type=authorization_code"
            ), Some(BACKEND_KEY))
        .await;
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("hint"), "the fake echoed: {text}");
    assert!(!text.contains(SHOP_SECRET), "{text}");
    assert!(
        !text.contains(BACKEND_KEY),
        "the client key never reached WeChat: {text}"
    );
    let location = headers.get("location").expect("echoed").to_str().unwrap();
    assert!(!location.contains(SHOP_SECRET), "{location}");
}

/// The proxy route's login puts the real AppSecret in `secret` (whatever the caller sent) and
/// the app's own appid; a duplicated `appid` or `secret` is refused on both fronts.
#[actix_web::test]
async fn logins_get_the_real_secret_and_duplicated_parameters_are_refused() {
    let app = gateway("").await;
    let (status, _, body) = app
        .get_raw("/v1/apps/shop/proxy/sns/jscode2session?secret=anything&js_code=c1&grant_type=authorization_code", Some(BACKEND_KEY))
        .await;
    assert_eq!(status, 200);
    assert!(json(&body)["openid"].is_string(), "{}", json(&body));
    let sent = &app.fake.api_requests("/sns/jscode2session")[0];
    let param = |k: &str| {
        sent.query
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(param("secret"), [SHOP_SECRET]);
    assert_eq!(param("appid"), [SHOP_APPID]);
    for query in [
        format!("appid={SHOP_APPID}&appid={BLOG_APPID}&secret={BILLING_KEY}&js_code=c"),
        format!("appid={SHOP_APPID}&secret={BILLING_KEY}&secret=x&js_code=c"),
        format!("appid={SHOP_APPID}&app%69d={BLOG_APPID}&secret={BILLING_KEY}&js_code=c"),
    ] {
        let (_, _, body) = app
            .get_raw(&format!("/sns/jscode2session?{query}"), None)
            .await;
        assert_eq!(json(&body)["errcode"], 40097, "{query}: {}", json(&body));
        let (status, _, _) = app
            .get_raw(
                &format!("/v1/apps/shop/proxy/sns/jscode2session?{query}"),
                Some(BACKEND_KEY),
            )
            .await;
        assert_eq!(status, 400, "{query}");
    }
    let (status, _, _) = app
        .get_raw(
            &format!("/v1/apps/shop/proxy/sns/jscode2session?appid={BLOG_APPID}&js_code=c"),
            Some(BACKEND_KEY),
        )
        .await;
    assert_eq!(status, 400, "another app's appid");
    assert_eq!(app.fake.api_calls("/sns/jscode2session"), 1);
}

/// `getticket` is answered from the ticket wxtoken manages, on both fronts and in any
/// spelling, for an app and for an authorized account: never forwarded, so an SDK that
/// fetches its own ticket gets the shared one and spends no quota.
#[actix_web::test]
async fn getticket_is_answered_from_the_managed_ticket() {
    let app = gateway_with_jsapi_ticket().await;
    let token = app.shop_token().await;
    let managed = app
        .get("/v1/apps/shop/ticket/jsapi", Some(BILLING_KEY))
        .await;
    assert_eq!(managed.status, 200, "{}", managed.body);
    let ticket = managed.body["ticket"].as_str().unwrap().to_string();
    let minted = app.fake.tickets_minted(SHOP_APPID);
    for path in [
        format!("/cgi-bin/ticket/getticket?access_token={token}&type=jsapi"),
        format!("/cgi-bin/ticket//getticket?access_token={token}"),
    ] {
        let a = app.get(&path, None).await;
        assert_eq!(a.body["errcode"], 0, "{path}: {}", a.body);
        assert_eq!(a.body["ticket"], ticket.as_str());
        assert!(a.body["expires_in"].as_u64().unwrap() > 0);
    }
    let proxied = app
        .get(
            "/v1/apps/shop/proxy/cgi-bin/ticket/getticket?type=jsapi",
            Some(BACKEND_KEY),
        )
        .await;
    assert_eq!(proxied.body["ticket"], ticket.as_str(), "{}", proxied.body);
    // A ticket wxtoken does not keep for the app: refused, not fetched.
    let card = app
        .get(
            &format!("/cgi-bin/ticket/getticket?access_token={token}&type=wx_card"),
            None,
        )
        .await;
    assert_eq!(card.body["errcode"], 48001, "{}", card.body);
    assert_eq!(
        app.fake.tickets_minted(SHOP_APPID),
        minted,
        "never forwarded"
    );
    assert_eq!(app.fake.calls(Endpoint::Ticket), minted);
}

/// An authorized account's `getticket` is its managed ticket, started on first use.
#[actix_web::test]
async fn an_accounts_getticket_is_its_managed_ticket() {
    let app = spawn_facade().await;
    let token = authorized_shop(&app, &[1]).await;
    let through = app
        .get(
            &format!("/cgi-bin/ticket/getticket?access_token={token}&type=jsapi"),
            None,
        )
        .await;
    assert_eq!(through.body["errcode"], 0, "{}", through.body);
    let managed = app
        .get(
            &format!("/v1/platforms/saas/authorizers/{}/ticket/jsapi", SHOP),
            Some(FACADE_KEY),
        )
        .await;
    assert_eq!(
        through.body["ticket"], managed.body["ticket"],
        "{}",
        managed.body
    );
    assert_eq!(
        app.fake.calls(Endpoint::Ticket),
        1,
        "fetched once, by wxtoken"
    );
}
