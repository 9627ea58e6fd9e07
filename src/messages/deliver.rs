//! The delivery workers: one per route, on the arbiter that starts them, each claiming its
//! route's due deliveries a few at a time ([`IN_FLIGHT_PER_ROUTE`] at most in attempts) and
//! recording each outcome. A route that is down only fills its own backlog: it never holds up
//! another route, the takes, or `/readyz`. Memory is bounded: a worker holds at most
//! [`IN_FLIGHT_PER_ROUTE`] deliveries, whatever the backlog in the store.
//!
//! A reload that changes a route hands its worker the new settings at the next claim, and one
//! that removes the route ends the worker (see `route_set`).
//!
//! The workers hold the hub weakly and end when it is dropped (the server stopped); an attempt
//! cut by the stop is not recorded, so the delivery is due again (at once on the embedded
//! store's next start, after its claim's lease with Redis).

use std::sync::{Arc, Weak};
use std::time::Duration;

use secrecy::ExposeSecret as _;

use super::hub::Shared;
use super::schedule::{after_failure, Next, ATTEMPT_TIMEOUT};
use super::signature::{sign, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::config::RouteSettings;
use crate::store::messages::{ClaimQuery, Claimed, DeliveryRecord, DeliveryState, Finish};
use crate::time::UnixMillis;

/// Attempts in flight per route: a slow receiver gets some parallelism, a dead one ties up
/// only these.
pub const IN_FLIGHT_PER_ROUTE: usize = 8;
/// Largest answer read from a receiver: a passive reply is a short XML or JSON document.
const MAX_ANSWER: usize = 64 * 1024;
/// After a claim fails (the store unreachable), the worker waits this long.
const CLAIM_RETRY: Duration = Duration::from_secs(1);

/// How one attempt ended.
#[derive(Debug)]
pub(super) enum Attempt {
    /// 2xx; with the body of a 200 that had one.
    Delivered(Option<String>),
    /// Anything else, as a short category.
    Failed(String),
}

/// The HTTP client of the workers on this thread (awc's is not `Send`).
pub(super) fn client(tls: Arc<rustls::ClientConfig>) -> awc::Client {
    let connector = awc::Connector::new()
        .rustls_0_23(tls)
        .timeout(ATTEMPT_TIMEOUT)
        .conn_lifetime(Duration::from_secs(300));
    awc::Client::builder()
        .connector(connector)
        .timeout(ATTEMPT_TIMEOUT)
        .disable_redirects()
        .add_default_header(("user-agent", concat!("wxtoken/", env!("CARGO_PKG_VERSION"))))
        .finish()
}

/// One POST of a delivery to its route.
pub(super) async fn attempt(client: &awc::Client, route: &RouteSettings, c: &Claimed) -> Attempt {
    let body = super::body::render(&c.delivery.id, &route.name, &c.push);
    let ts = UnixMillis::now().as_millis() / 1000;
    let signature = sign(route.signing_key.expose_secret().as_bytes(), ts, &body);
    let sent = client
        .post(route.url.as_str())
        .insert_header(("content-type", "application/json"))
        .insert_header((TIMESTAMP_HEADER, ts.to_string()))
        .insert_header((SIGNATURE_HEADER, signature))
        .send_body(body);
    let answered = tokio::time::timeout(ATTEMPT_TIMEOUT, async {
        let mut resp = sent.await.map_err(|e| send_error(&e))?;
        let status = resp.status();
        let body = resp.body().limit(MAX_ANSWER).await;
        Ok::<_, String>((status, body))
    })
    .await;
    match answered {
        Err(_) => Attempt::Failed("timeout".into()),
        Ok(Err(e)) => Attempt::Failed(e),
        Ok(Ok((status, body))) if status.is_success() => {
            let reply = match body {
                Ok(b) if status.as_u16() == 200 && !b.is_empty() => {
                    String::from_utf8(b.to_vec()).ok()
                }
                _ => None,
            };
            Attempt::Delivered(reply)
        }
        Ok(Ok((status, _))) => Attempt::Failed(format!("status {}", status.as_u16())),
    }
}

fn send_error(e: &awc::error::SendRequestError) -> String {
    use awc::error::SendRequestError as E;
    match e {
        E::Timeout => "timeout",
        E::Connect(_) => "connect",
        E::Url(_) => "url",
        _ => "send",
    }
    .into()
}

impl Shared {
    /// Records how an attempt of `c` to `route` ended (counted, logged by id only).
    pub(super) async fn record(&self, route: &RouteSettings, c: &Claimed, outcome: &Attempt) {
        let d = &c.delivery;
        let finish = match outcome {
            Attempt::Delivered(_) => {
                self.metrics.delivery(&route.name, "delivered");
                tracing::debug!(delivery = %d.id, route = %route.name, attempts = d.attempts + 1, "delivered");
                Finish::Delivered { id: d.id.clone() }
            }
            Attempt::Failed(why) => {
                let attempts = d.attempts.saturating_add(1);
                let now = UnixMillis::now();
                let next = after_failure(attempts, now, d.age_from, route.max_age, rand::random());
                let (state, next_at, purge_at) = match next {
                    Next::Retry(at) => {
                        self.metrics.delivery(&route.name, "failed");
                        (DeliveryState::Pending, at, None)
                    }
                    Next::Dead => {
                        self.metrics.delivery(&route.name, "dead");
                        tracing::warn!(delivery = %d.id, route = %route.name, attempts,
                            error = %why, "delivery given up after max_age_secs");
                        let purge_at = now.saturating_add(route.dead_retention);
                        (DeliveryState::Dead, now, Some(purge_at))
                    }
                };
                tracing::info!(delivery = %d.id, route = %route.name, attempts, error = %why, "delivery attempt failed");
                Finish::Failed {
                    record: DeliveryRecord {
                        state,
                        attempts,
                        last_error: Some(why.clone()),
                        next_at,
                        purge_at,
                        ..d.clone()
                    },
                }
            }
        };
        if let Err(e) = self.store.finish(finish).await {
            // Not recorded: the delivery stays due and is made again (at least once).
            tracing::warn!(delivery = %d.id, route = %route.name, error = %format!("{e:#}"),
                "the outcome of a delivery could not be stored; it will be attempted again");
        }
    }
}

/// The worker `worker` of the route `name`: claims due deliveries while it has free slots,
/// then waits for a take, a finished attempt, or the poll interval. It ends when the hub is
/// dropped, or when a reload removed the route or gave it another worker.
pub(super) async fn work(hub: Weak<Shared>, name: String, worker: u64) {
    let (client, slots, wake, poll) = match hub.upgrade() {
        Some(s) => {
            let Some(route) = s.routes.load().get(&name).cloned() else {
                return;
            };
            (
                client(s.tls.clone()),
                Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_PER_ROUTE)),
                route.wake.clone(),
                s.options.poll,
            )
        }
        None => return,
    };
    loop {
        let Some(s) = hub.upgrade() else { return };
        // The route as the last reload left it; gone, or another worker's now: this one ends.
        let current = s.routes.load().get(&name).cloned();
        let Some(route) = current.filter(|r| r.worker == worker) else {
            return;
        };
        let route = route.settings.clone();
        let free = slots.available_permits();
        let mut full = false;
        if free > 0 {
            match s
                .store
                .claim(ClaimQuery {
                    route: route.name.clone(),
                    now: UnixMillis::now(),
                    lease: s.options.lease,
                    limit: free,
                })
                .await
            {
                Ok(batch) => {
                    full = batch.len() == free;
                    for c in batch {
                        let Ok(permit) = slots.clone().try_acquire_owned() else {
                            break;
                        };
                        let (s, client, route, wake) =
                            (s.clone(), client.clone(), route.clone(), wake.clone());
                        actix_web::rt::spawn(async move {
                            let outcome = attempt(&client, &route, &c).await;
                            s.record(&route, &c, &outcome).await;
                            drop(permit);
                            // A slot is free: look for more.
                            wake.notify_one();
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(route = %route.name, error = %format!("{e:#}"),
                        "cannot claim deliveries; trying again");
                    drop(s);
                    tokio::time::sleep(CLAIM_RETRY).await;
                    continue;
                }
            }
        }
        drop(s);
        if full && slots.available_permits() > 0 {
            continue;
        }
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(poll) => {}
        }
    }
}
