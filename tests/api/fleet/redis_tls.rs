//! The fleet over TLS to Redis: a `redis-server` listening with `--tls-port` only, on
//! certificates made by the test; the server's certificate checked against `tls_ca_file` and
//! the host name, and a client certificate for mutual TLS.

use std::time::Duration;

use wxtoken::config::{RedisTls, Settings, StoreSettings};

use crate::support::fleet::{invalidate_at, token_at};
use crate::support::helpers::*;
use crate::support::redis_topology::{Pki, TlsRedis};

fn settings(spec: &Spec, base_url: &str, store: wxtoken::config::RedisSettings) -> Settings {
    let dir = std::env::temp_dir();
    let mut s = settings_for(spec, base_url, &dir.join("unused.redb"));
    s.store = StoreSettings::Redis(wxtoken::config::RedisSettings {
        key_prefix: "wxt".into(),
        poll_interval: Duration::from_millis(300),
        ..store
    });
    s
}

/// The start-up error of a server with these settings.
async fn start_error(settings: Settings) -> String {
    match wxtoken::startup::Application::build(settings, Default::default()).await {
        Ok(_) => panic!("started although TLS to Redis cannot work"),
        Err(e) => format!("{e:#}"),
    }
}

#[actix_web::test]
async fn a_fleet_shares_one_token_over_mutual_tls() {
    let pki = Pki::new(&["127.0.0.1"]);
    let redis = TlsRedis::start(&pki, true);
    let spec = Spec::default();
    let fake = start_fake(&spec).await;
    let tls = RedisTls {
        ca_file: Some(pki.ca.clone()),
        client: Some((pki.client_cert.clone(), pki.client_key.clone())),
    };
    let servers: Vec<ThreadServer> = ["tls-a", "tls-b"]
        .iter()
        .map(|name| {
            let store = redis.store("127.0.0.1", tls.clone(), name);
            ThreadServer::start(settings(&spec, &fake.base_url(), store))
        })
        .collect();
    let http = client();
    let token = token_at(&http, &servers[0].base).await;
    let shared = eventually(Duration::from_secs(3), || async {
        token_at(&http, &servers[1].base).await == token
    })
    .await;
    assert!(shared, "the second instance serves the first one's token");
    assert_eq!(fake.minted(SHOP_APPID), 1, "one fetch for the fleet");
    for s in &servers {
        let (status, ready) = get_json(&http, &format!("{}/readyz", s.base), OPS_KEY).await;
        assert_eq!(status, 200, "{ready}");
        assert_eq!(ready["store"]["up"], true, "{ready}");
    }
    // Invalidating at the second instance is seen by the first: the change notification
    // travels over TLS too.
    assert!(fake.kill_token(&token));
    let answer = invalidate_at(&http, &servers[1].base, &token).await;
    assert_eq!(answer["refreshed"], true, "{answer}");
    let new = fake.current_token(SHOP_APPID).unwrap();
    assert_ne!(new, token);
    let adopted = eventually(Duration::from_secs(2), || async {
        token_at(&http, &servers[0].base).await == new
    })
    .await;
    assert!(adopted, "the first instance adopted the new token");
    assert_eq!(fake.minted(SHOP_APPID), 2);
    for s in servers {
        s.stop();
    }
}

#[actix_web::test]
async fn a_wrong_ca_a_wrong_server_name_or_a_missing_client_certificate_fail_at_start() {
    let pki = Pki::new(&["127.0.0.1"]);
    let redis = TlsRedis::start(&pki, true);
    let spec = Spec::default();
    let fake = start_fake(&spec).await;
    let client = Some((pki.client_cert.clone(), pki.client_key.clone()));

    let wrong_ca = RedisTls {
        ca_file: Some(pki.other_ca.clone()),
        client: client.clone(),
    };
    let e = start_error(settings(
        &spec,
        &fake.base_url(),
        redis.store("127.0.0.1", wrong_ca, "a"),
    ))
    .await;
    assert!(e.contains("TLS to Redis"), "{e}");
    assert!(e.contains("UnknownIssuer"), "the reason is given: {e}");

    // The certificate names 127.0.0.1, not localhost.
    let right_ca = RedisTls {
        ca_file: Some(pki.ca.clone()),
        client,
    };
    let e = start_error(settings(
        &spec,
        &fake.base_url(),
        redis.store("localhost", right_ca, "b"),
    ))
    .await;
    assert!(e.contains("TLS to Redis"), "{e}");
    assert!(e.contains("not valid for name"), "the reason is given: {e}");

    // The server asks for a client certificate and gets none.
    let no_client = RedisTls {
        ca_file: Some(pki.ca.clone()),
        client: None,
    };
    let e = start_error(settings(
        &spec,
        &fake.base_url(),
        redis.store("127.0.0.1", no_client, "c"),
    ))
    .await;
    assert!(e.contains("TLS to Redis"), "{e}");
}
