//! 10,000 pushes a minute (about 167 a second) through the message URL for a short window: every
//! push is taken and delivered, and the backlog stays bounded while they come in.

use std::time::{Duration, Instant};

use wxtoken::fake::FakeInbox;

use crate::support::deliveries::*;
use crate::support::helpers::*;

/// How long the rate is held.
const WINDOW: Duration = Duration::from_secs(4);
/// Pushes a second: 10,000 a minute.
const RATE: u64 = 167;

#[actix_web::test]
async fn ten_thousand_pushes_a_minute_are_delivered_with_a_bounded_backlog() {
    let inbox = FakeInbox::start(ROUTE_KEY).await.expect("inbox");
    let app = start_with_routes(&route("crm", &inbox.url(), "")).await;
    let total = RATE * WINDOW.as_secs();
    let started = Instant::now();
    let mut most_behind = 0u64;
    let mut sent = 0u64;
    while sent < total {
        // Each tick sends what the rate allows by now, 20 at a time in parallel.
        let due = (started.elapsed().as_secs_f64() * RATE as f64) as u64;
        while sent < due.min(total) {
            let batch: Vec<u64> = (sent..(sent + 20).min(due.min(total))).collect();
            let pushes = batch.iter().map(|id| push_text(&app.base, 500_000 + id));
            for p in futures_util::future::join_all(pushes).await {
                assert_eq!(p.status, Some(200), "{p:?}");
            }
            sent += batch.len() as u64;
        }
        most_behind = most_behind.max(sent - inbox.delivered().len() as u64);
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let pushing = started.elapsed();
    assert!(
        pushing < WINDOW + Duration::from_secs(2),
        "the pushes kept the rate: {pushing:?}"
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            inbox.delivered().len() as u64 >= total
        })
        .await,
        "delivered {} of {total}",
        inbox.delivered().len()
    );
    // Never more than two seconds of pushes behind (on a test machine shared with other tests).
    assert!(most_behind < 2 * RATE, "the backlog reached {most_behind}");
}
