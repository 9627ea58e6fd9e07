//! node `wechat-api` (1.35, the SDK behind many Node.js WeChat servers) pointed at wxtoken by
//! a base URL ending in `/`, so that every path it sends starts with `//`: its token comes from
//! the facade, its business call goes through the gateway, and its own `getticket` is answered
//! from the ticket wxtoken manages. scripts/test installs the package under `target/sdk/node`.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::support::gateway::gateway_with_jsapi_ticket;
use crate::support::helpers::*;

/// Where scripts/test installs the SDK.
fn node_modules() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/sdk/node/node_modules")
}

const WECHAT_API_CALLS: &str = r#"
const API = require('wechat-api');
const [base, appid, key] = process.argv.slice(1);
const api = new API(appid, key);
api.endpoint = base + '/';
api.getUser('o1', (err, user) => {
  if (err) { console.log(JSON.stringify({ error: String(err) })); return; }
  api.getTicket('jsapi', (err, ticket) => {
    if (err) { console.log(JSON.stringify({ error: String(err) })); return; }
    console.log(JSON.stringify({ user, ticket: ticket.ticket }));
  });
});
"#;

#[actix_web::test]
async fn node_wechat_api_with_a_trailing_slash_base_url_works_through_wxtoken() {
    assert!(
        node_modules().join("wechat-api").is_dir(),
        "wechat-api not found under {}: run scripts/test, which installs it from npm",
        node_modules().display()
    );
    let app = gateway_with_jsapi_ticket().await;
    let token = app.shop_token().await;
    let managed = app
        .get("/v1/apps/shop/ticket/jsapi", Some(BILLING_KEY))
        .await;
    let args = vec![
        app.base.clone(),
        SHOP_APPID.to_string(),
        BILLING_KEY.to_string(),
    ];
    let out = actix_web::rt::task::spawn_blocking(move || {
        Command::new("node")
            .env("NODE_PATH", node_modules())
            .arg("-e")
            .arg(WECHAT_API_CALLS)
            .args(args)
            .output()
            .expect("node runs")
    })
    .await
    .expect("joined");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Value = serde_json::from_str(printed.trim()).expect("the SDK printed JSON");
    assert_eq!(answers["user"]["openid"], "o1", "{answers}");
    assert_eq!(answers["ticket"], managed.body["ticket"], "{answers}");
    // The business call went with the shared token; the SDK fetched no token of its own.
    let sent = app.fake.api_requests("/cgi-bin/user/info");
    let sent_token = sent[0].query.iter().find(|(k, _)| k == "access_token");
    assert_eq!(sent_token.map(|(_, v)| v.as_str()), Some(token.as_str()));
    assert_eq!(app.minted(SHOP_APPID), 1);
    assert_eq!(app.fake.tickets_minted(SHOP_APPID), 1);
}
