//! What the delivery tests share: `[[routes]]` tables to a fake inbox, the `shop` app taking
//! plaintext pushes, the hub's short lease and poll, pushes through the real message URL, the
//! admin's delivery routes, and the wait until no delivery is pending.

use std::time::Duration;

use serde_json::Value;
use wxtoken::config::{MessageFormat, Settings};
use wxtoken::fake::messages::{push_message, text_message, Mode, Pushed, Retries};
use wxtoken::messages::HubOptions;

use super::config::{Client, ConfigText};
use super::helpers::*;
use super::messages::{shop_target, shop_with_messages};

/// Every test route's signing key (the fake inbox checks it).
pub const ROUTE_KEY: &str = "route-signing-key-0123456789";

/// A claim lease of 2 s, a poll every 100 ms and a sweep every 200 ms: a crashed instance's
/// claims come back fast, and dead deliveries past their retention go soon.
pub const FAST_HUB: HubOptions = HubOptions {
    lease: Duration::from_secs(2),
    poll: Duration::from_millis(100),
    sweep: Duration::from_millis(200),
};

/// A `[[routes]]` table to `url`, signed with [`ROUTE_KEY`], with `extra` lines.
pub fn route(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[routes]]\nname = \"{name}\"\nurl = \"{url}\"\nsigning_key = \"{ROUTE_KEY}\"\n{extra}\n"
    )
}

/// `shop` taking plaintext XML pushes, `billing` (reads tokens) and `ops` (admin), then
/// `routes`.
pub fn with_routes(routes: &str) -> String {
    ConfigText::new()
        .app(shop_with_messages(false, MessageFormat::Xml))
        .client(Client::new("billing", BILLING_KEY).apps(&["*"]))
        .client(Client::new("ops", OPS_KEY).apps(&["*"]).admin())
        .raw(routes)
        .to_string()
}

/// A server with `routes` (see [`with_routes`]) and the fast hub.
pub async fn start_with_routes(routes: &str) -> TestApp {
    TestApp::builder()
        .config(&with_routes(routes))
        .adjust(|(_, o)| o.hub = FAST_HUB)
        .start()
        .await
}

/// The settings of a server with `routes` on the embedded file `store`, for restarts.
pub fn settings_with_routes(fake_base: &str, store: &std::path::Path, routes: &str) -> Settings {
    custom_settings(&Spec::default(), fake_base, store, &with_routes(routes))
}

/// The settings of instance `instance` of a fleet on `redis` (its own `Deployment`: a server
/// or a Cluster), with `routes`, no local copy.
pub fn settings_on_redis(
    fake_base: &str,
    redis: &dyn crate::support::redis_topology::Deployment,
    instance: &str,
    routes: &str,
) -> Settings {
    let unused = std::env::temp_dir().join("unused.redb");
    let mut s = settings_with_routes(fake_base, &unused, routes);
    let mut store = redis.store(instance);
    store.key_prefix = "wxt".into();
    store.local_path = None;
    s.store = wxtoken::config::StoreSettings::Redis(store);
    s
}

/// One text message pushed to `shop` at `base` as WeChat does it (no retry): its answer.
pub async fn push_text(base: &str, msg_id: u64) -> Pushed {
    let fields = text_message("gh_shop", "o-user-1", &format!("hello {msg_id}"), msg_id);
    push_message(
        &shop_target(base, MessageFormat::Xml),
        &fields,
        Mode::Plaintext,
        Retries {
            timeout: Duration::from_secs(5),
            again: 0,
        },
    )
    .await
}

/// Pushes text messages `ids` to `base`, each answered `success`.
pub async fn push_all(base: &str, ids: impl IntoIterator<Item = u64>) {
    for id in ids {
        let pushed = push_text(base, id).await;
        assert_eq!(pushed.status, Some(200), "push {id}: {pushed:?}");
    }
}

/// An admin request (`key` as the bearer, none when `None`): status and JSON body.
pub async fn admin_call(
    http: &awc::Client,
    method: &str,
    url: &str,
    key: Option<&str>,
) -> (u16, Value) {
    let mut req = match method {
        "GET" => http.get(url),
        "DELETE" => http.delete(url),
        _ => http.post(url),
    };
    if let Some(k) = key {
        req = req.insert_header(("Authorization", format!("Bearer {k}")));
    }
    let mut res = req.send().await.expect("request sent");
    let body = res.body().await.unwrap_or_default();
    (
        res.status().as_u16(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

/// The ids of the deliveries in `state` at `base` (pages of `limit`, followed to the end).
pub async fn listed(http: &awc::Client, base: &str, state: &str, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let url = format!("{base}/v1/admin/deliveries?state={state}&offset={offset}&limit={limit}");
        let (status, body) = admin_call(http, "GET", &url, Some(OPS_KEY)).await;
        assert_eq!(status, 200, "{body}");
        for d in body["deliveries"].as_array().expect("a list") {
            out.push(d["id"].as_str().expect("an id").to_string());
        }
        match body["next_offset"].as_u64() {
            Some(next) => offset = next as usize,
            None => return out,
        }
    }
}

/// Waits until no delivery is pending at the server at `base` (panics after 10 s, listing
/// them), for a test that then says what was not delivered. Call it once the pushes were
/// answered: a taken push's deliveries are written before WeChat gets its answer. A delivery in
/// an attempt (a worker's claim, or a reply being waited for) is listed as pending, and leaves
/// the listing only when its outcome is written: so an empty listing means every delivery so
/// far was made or given up, and none is left for a worker to claim, now or when a lease ends.
pub async fn until_nothing_pending(http: &awc::Client, base: &str) {
    let settled = eventually(Duration::from_secs(10), || async {
        listed(http, base, "pending", 100).await.is_empty()
    })
    .await;
    assert!(
        settled,
        "still pending: {:?}",
        listed(http, base, "pending", 100).await
    );
}
