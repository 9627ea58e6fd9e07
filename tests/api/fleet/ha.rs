//! High availability: several instances share tokens through a real `redis-server`, with one
//! upstream fetch per refresh for the whole fleet.

use std::time::Duration;

use secrecy::SecretString;
use wxtoken::config::{RedisEndpoint, SecretSource, StoreSettings};

use crate::support::fleet::*;
use crate::support::ha;
use crate::support::helpers::*;

#[actix_web::test]
async fn three_instances_fetch_once_per_cycle_and_survive_losing_the_refresher() {
    ha::once_per_cycle_and_losing_the_refresher(&RedisServer::start(None)).await;
}

#[actix_web::test]
async fn invalidations_at_every_instance_cost_one_fetch() {
    ha::invalidations_cost_one_fetch(&RedisServer::start(None)).await;
}

#[actix_web::test]
async fn redis_outage_costs_no_fetch_and_an_empty_restart_is_refilled() {
    ha::outage_costs_no_fetch_and_is_refilled(&mut RedisServer::start(None)).await;
}

#[actix_web::test]
async fn a_slow_refresher_never_overwrites_a_newer_token() {
    ha::slow_refresher_is_fenced(&RedisServer::start(None)).await;
}

#[actix_web::test]
async fn password_and_key_prefix_are_used_and_a_wrong_password_fails_startup() {
    let spec = Spec::default();
    let fake = start_fake(&spec).await;
    let redis = RedisServer::start(Some("s3cret-redis-pass"));
    let mut settings = redis_settings(&spec, &fake, &redis, "one", Duration::from_secs(5));
    if let StoreSettings::Redis(r) = &mut settings.store {
        r.key_prefix = "custom-prefix".into();
    }
    let server = ThreadServer::start(settings);
    let http = client();
    let token = token_at(&http, &server.base).await;
    let record = redis
        .hget("custom-prefix:token:wxshop00000000001", "record")
        .expect("record under the configured prefix");
    assert!(record.contains(&token));
    server.stop();

    let mut wrong = redis_settings(&spec, &fake, &redis, "two", Duration::from_secs(5));
    if let StoreSettings::Redis(r) = &mut wrong.store {
        r.endpoint = RedisEndpoint::Url {
            url: SecretString::from(format!("redis://:wrong-pass@127.0.0.1:{}/", redis.port)),
            source: SecretSource::Inline,
        };
    }
    let err = match wxtoken::startup::Application::build(wrong, Default::default()).await {
        Ok(_) => panic!("started with a wrong Redis password"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("rejected the credentials"), "{err}");
    assert!(
        !err.contains("wrong-pass"),
        "the password is not echoed: {err}"
    );
}

#[actix_web::test]
async fn tickets_are_shared_by_the_fleet_too() {
    ha::tickets_are_shared(&RedisServer::start(None)).await;
}
