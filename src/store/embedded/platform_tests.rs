//! Unit tests of the embedded store's Open Platform records: round trips through the file, a
//! newer record never replaced by an older one, batches at scale, corrupt or out-of-range
//! records skipped and never quoted, names the key scheme refuses, events kept apart from
//! tickets and authorizers, and authorization codes that only move forward.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::metrics::{Metrics, MetricsMode};
use crate::secret::AccessToken;
use crate::store::platform::{CodeState, EventRecord};

fn at(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

fn authorizer(i: usize, updated_ms: u64) -> AuthorizerRecord {
    AuthorizerRecord::authorized(
        format!("wxauth{i:08}"),
        Some(AccessToken::new(format!("refreshtoken@@@{i}-{updated_ms}"))),
        vec![1, 17],
        Some(at(1_700_000_000_000)),
        at(updated_ms),
    )
}

fn ticket(received_ms: u64) -> TicketRecord {
    TicketRecord {
        component_appid: "wxcomponent0001".into(),
        ticket: AccessToken::new(format!("ticket@@@{received_ms}")),
        received_at: at(received_ms),
    }
}

fn open_with(dir: &tempfile::TempDir, metrics: Metrics) -> EmbeddedStore {
    EmbeddedStore::open(&dir.path().join("p.redb"), metrics).expect("store opens")
}

fn open(dir: &tempfile::TempDir) -> EmbeddedStore {
    open_with(dir, Metrics::new(&[], MetricsMode::Full))
}

/// The store closed and opened again: what it answers now comes from the file.
fn reopen(store: EmbeddedStore, dir: &tempfile::TempDir) -> EmbeddedStore {
    drop(store);
    open(dir)
}

/// Writes raw bytes under a table key, as a damaged file or an older version would hold.
fn put_raw(store: &EmbeddedStore, key: &str, bytes: &[u8]) {
    let mut disk = store.inner.disk();
    let db = store.inner.db(&mut disk).expect("open");
    let tx = db.begin_write().unwrap();
    tx.open_table(PLATFORM).unwrap().insert(key, bytes).unwrap();
    tx.commit().unwrap();
}

#[tokio::test]
async fn records_round_trip_through_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    assert_eq!(store.load_ticket("saas").await.unwrap(), None);
    assert!(store.load_authorizers("saas").await.unwrap().is_empty());
    store.save_ticket("saas", &ticket(5)).await.unwrap();
    let records = vec![authorizer(1, 10), authorizer(2, 10)];
    assert_eq!(
        store.save_authorizers("saas", &records).await.unwrap(),
        [true, true]
    );
    // Another platform's records are apart, even one whose name extends this one's.
    store
        .save_authorizers("saas2", &[authorizer(3, 10)])
        .await
        .unwrap();
    drop(store);

    let store = open(&dir);
    assert_eq!(store.load_ticket("saas").await.unwrap(), Some(ticket(5)));
    assert_eq!(store.load_ticket("saas2").await.unwrap(), None);
    assert_eq!(store.load_authorizers("saas").await.unwrap(), records);
    assert_eq!(
        store
            .load_authorizer("saas", "wxauth00000002")
            .await
            .unwrap(),
        Some(authorizer(2, 10))
    );
    assert_eq!(
        store
            .load_authorizer("saas", "wxauth00000003")
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.load_authorizers("saas2").await.unwrap().len(), 1);
    assert!(store.not_durable_records().is_empty());
}

#[tokio::test]
async fn an_older_record_does_not_replace_a_newer_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let save = |records: Vec<AuthorizerRecord>| {
        let store = &store;
        async move { store.save_authorizers("saas", &records).await.unwrap() }
    };
    let newer = authorizer(1, 2_000);
    let older = authorizer(1, 1_000);
    assert_eq!(save(vec![newer.clone()]).await, [true]);
    assert_eq!(save(vec![older.clone()]).await, [false]);
    // The same record again is no conflict, and costs no commit.
    let commits = store.commits();
    assert_eq!(save(vec![newer]).await, [true]);
    assert_eq!(store.commits(), commits);
    // Within one batch, too, order is by `updated_at`, not by position.
    let newest = authorizer(1, 3_000);
    assert_eq!(save(vec![newest.clone(), older]).await, [true, false]);
    assert_eq!(
        store.load_authorizer("saas", &newest.appid).await.unwrap(),
        Some(newest)
    );

    store.save_ticket("saas", &ticket(20)).await.unwrap();
    store.save_ticket("saas", &ticket(10)).await.unwrap();
    assert_eq!(store.load_ticket("saas").await.unwrap(), Some(ticket(20)));
}

#[tokio::test]
async fn a_batch_of_ten_thousand_is_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let records: Vec<_> = (0..10_000).map(|i| authorizer(i, 1_000)).collect();
    let before = store.commits();
    let started = Instant::now();
    let written = store.save_authorizers("saas", &records).await.unwrap();
    eprintln!("10,000 authorizer records saved in {:?}", started.elapsed());
    assert_eq!(written.len(), 10_000);
    assert!(written.iter().all(|w| *w));
    assert_eq!(store.commits(), before + 1);
    let store = reopen(store, &dir);
    assert_eq!(store.load_authorizers("saas").await.unwrap().len(), 10_000);
}

#[tokio::test]
async fn a_hundred_thousand_records_load_in_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for chunk in (0..100_000).collect::<Vec<_>>().chunks(25_000) {
        let records: Vec<_> = chunk.iter().map(|&i| authorizer(i, 1_000)).collect();
        store.save_authorizers("saas", &records).await.unwrap();
    }
    store
        .save_authorizers("other", &[authorizer(0, 1)])
        .await
        .unwrap();
    let store = reopen(store, &dir);
    let started = Instant::now();
    let loaded = store.load_authorizers("saas").await.unwrap();
    eprintln!(
        "100,000 authorizer records loaded in {:?}",
        started.elapsed()
    );
    assert_eq!(loaded.len(), 100_000);
    assert_eq!(loaded[99_999], authorizer(99_999, 1_000));
}

/// A log sink shared with the store's threads.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// A sink that takes this thread's logs until the guard is dropped.
    fn logs() -> (Captured, tracing::subscriber::DefaultGuard) {
        let sink = Captured::default();
        let w = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .finish();
        (sink, tracing::subscriber::set_default(subscriber))
    }

    /// What was logged so far.
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The logs say `why` a record was skipped, and quote none of `secrets`.
    fn said_without(&self, why: &str, secrets: &[&str]) {
        let logs = self.text();
        assert!(logs.contains(why), "the skips are logged: {logs}");
        for secret in secrets {
            assert!(!logs.contains(secret), "{secret} in the logs: {logs}");
        }
    }
}

/// A ticket saved over a skipped one is stored and read back.
async fn ticket_replaces_what_was_stored(store: &EmbeddedStore) {
    store.save_ticket("saas", &ticket(1)).await.unwrap();
    assert_eq!(store.load_ticket("saas").await.unwrap(), Some(ticket(1)));
}

/// The platform's count of records that could not be decoded, and the whole rendering.
fn decode_errors(metrics: &Metrics) -> (Option<String>, String) {
    let text = metrics.render();
    let series = "wxtoken_store_errors_total{app=\"platform:saas\",op=\"decode\"}";
    let count = text
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .map(|v| v.trim().to_string());
    (count, text)
}

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn corrupt_records_are_skipped_counted_and_never_quoted() {
    let (sink, _guard) = Captured::logs();
    let (dir, metrics) = (
        tempfile::tempdir().unwrap(),
        Metrics::new(&[], MetricsMode::Full),
    );
    let store = open_with(&dir, metrics.clone());
    let good = authorizer(1, 1_000);
    store
        .save_authorizers("saas", std::slice::from_ref(&good))
        .await
        .unwrap();
    put_raw(
        &store,
        "saas/authorizer/wxbroken",
        b"{\"v\":1,\"refresh_token\":\"LEAKED-REFRESH",
    );
    // A well-formed record filed under another appid's key is not that appid's.
    put_raw(
        &store,
        "saas/authorizer/wxelsewhere",
        &encode_authorizer(&Keyring::plaintext(), "saas", &authorizer(2, 1_000)),
    );
    put_raw(&store, "saas/ticket", b"LEAKED-TICKET");

    assert_eq!(store.load_authorizers("saas").await.unwrap(), [good]);
    assert_eq!(store.load_ticket("saas").await.unwrap(), None);
    let (count, text) = decode_errors(&metrics);
    assert_eq!(count.as_deref(), Some("3"), "{text}");

    // A corrupt record does not fence a good one.
    let repaired = authorizer(9, 1);
    let mut as_broken = repaired.clone();
    as_broken.appid = "wxbroken".into();
    assert_eq!(
        store.save_authorizers("saas", &[as_broken]).await.unwrap(),
        [true]
    );
    ticket_replaces_what_was_stored(&store).await;
    sink.said_without("corrupt", &["LEAKED", "refreshtoken@@@", "ticket@@@"]);
}

/// `bytes` (a stored JSON record) with `field` set to `value`.
fn with_field(bytes: &[u8], field: &str, value: serde_json::Value) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    v[field] = value;
    v.to_string().into_bytes()
}

#[tokio::test]
async fn a_time_out_of_range_is_a_corrupt_record_that_fences_nothing() {
    let (sink, _guard) = Captured::logs();
    let (dir, metrics) = (
        tempfile::tempdir().unwrap(),
        Metrics::new(&[], MetricsMode::Full),
    );
    let store = open_with(&dir, metrics.clone());
    // Past the year 9999: when authorized (what the listing formats), and as the write order.
    let year_10000 = serde_json::json!(253_402_300_800_000u64);
    let hostile = authorizer(1, 1_000);
    let bytes = with_field(
        &encode_authorizer(&Keyring::plaintext(), "saas", &hostile),
        "authorized_at_ms",
        year_10000,
    );
    put_raw(
        &store,
        &format!("saas/authorizer/{}", hostile.appid),
        &bytes,
    );
    let fencing = authorizer(2, 1_000);
    let bytes = with_field(
        &encode_authorizer(&Keyring::plaintext(), "saas", &fencing),
        "updated_at_ms",
        serde_json::json!(u64::MAX),
    );
    put_raw(
        &store,
        &format!("saas/authorizer/{}", fencing.appid),
        &bytes,
    );
    let bytes = with_field(
        &encode_ticket(&Keyring::plaintext(), "saas", &ticket(5)),
        "received_at_ms",
        serde_json::json!(u64::MAX),
    );
    put_raw(&store, "saas/ticket", &bytes);

    assert_eq!(store.load_authorizers("saas").await.unwrap(), []);
    assert_eq!(
        store.load_authorizer("saas", &hostile.appid).await.unwrap(),
        None
    );
    assert_eq!(store.load_ticket("saas").await.unwrap(), None);
    let (count, text) = decode_errors(&metrics);
    assert_eq!(count.as_deref(), Some("4"), "counted at each read: {text}");

    // Good records replace them, however far in the future the stored order claimed to be.
    let good = [authorizer(1, 2_000), authorizer(2, 2_000)];
    assert_eq!(
        store.save_authorizers("saas", &good).await.unwrap(),
        [true, true]
    );
    assert_eq!(store.load_authorizers("saas").await.unwrap(), good);
    ticket_replaces_what_was_stored(&store).await;
    sink.said_without("a time out of range", &["refreshtoken@@@", "ticket@@@"]);
}

#[tokio::test]
async fn names_that_would_break_the_key_scheme_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut bad = authorizer(1, 1);
    bad.appid = "wx/../other".into();
    let e = store.save_authorizers("saas", &[bad]).await.unwrap_err();
    assert!(e.to_string().contains("appid"), "{e}");
    assert!(store.load_authorizers("a/b").await.is_err());
    assert!(store.save_ticket("", &ticket(1)).await.is_err());
    assert!(store.load_authorizer("saas", "").await.is_err());
}

#[tokio::test]
async fn events_of_other_kinds_are_kept_apart_from_tickets_and_authorizers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for (i, kind) in ["notify_third_fasteregister", "notify_third_fasteregister"]
        .iter()
        .enumerate()
    {
        let event = EventRecord {
            info_type: (*kind).into(),
            received_at: at(1_700_000_000_000 + i as u64),
            xml: format!("<xml><InfoType>{kind}</InfoType><N>{i}</N></xml>"),
        };
        store.save_event("saas", &event).await.expect("saved");
    }
    // In the file, both of them (the same second, two records), in arrival order.
    let store = reopen(store, &dir);
    let raw = store
        .inner
        .read_platform(prefix_range("saas/event/"))
        .expect("read");
    let events: Vec<serde_json::Value> = raw
        .values()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["info_type"], "notify_third_fasteregister");
    assert!(events[1]["xml"].as_str().unwrap().contains("<N>1</N>"));
    // Nothing else sees them.
    assert!(store.load_authorizers("saas").await.unwrap().is_empty());
    assert!(store.load_ticket("saas").await.unwrap().is_none());
}

fn code_record(code: &str, state: CodeState, updated_ms: u64) -> CodeRecord {
    CodeRecord {
        digest: crate::store::platform::code_digest(code),
        authorizer_appid: "wxauth00000001".into(),
        code: (state == CodeState::Pending).then(|| AccessToken::new(code)),
        state,
        errcode: None,
        expires_at: at(1_700_000_600_000),
        received_at: at(1_700_000_000_000),
        updated_at: at(updated_ms),
    }
}

#[tokio::test]
async fn code_records_move_forward_only_survive_a_reopen_and_can_be_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let pending = code_record("queryauthcode@@@one", CodeState::Pending, 10);
    let other = code_record("queryauthcode@@@two", CodeState::Pending, 10);
    assert!(store.save_code("saas", &pending).await.unwrap());
    assert!(store.save_code("saas", &other).await.unwrap());
    assert_eq!(
        store.load_code("saas", &pending.digest).await.unwrap(),
        Some(pending.clone())
    );
    let exchanged = code_record("queryauthcode@@@one", CodeState::Exchanged, 20);
    assert!(store.save_code("saas", &exchanged).await.unwrap());
    // A pending copy, however new, never makes a done code pending again.
    let late = code_record("queryauthcode@@@one", CodeState::Pending, 99);
    assert!(!store.save_code("saas", &late).await.unwrap());
    // Neither the ticket nor the authorizers see code records, nor the other way round.
    store.save_ticket("saas", &ticket(5)).await.unwrap();
    store
        .save_authorizers("saas", &[authorizer(1, 10)])
        .await
        .unwrap();
    let store = reopen(store, &dir);
    let mut codes = store.load_codes("saas").await.unwrap();
    codes.sort_by_key(|c| c.state);
    assert_eq!(codes, vec![other.clone(), exchanged.clone()]);
    assert_eq!(store.load_authorizers("saas").await.unwrap().len(), 1);
    assert!(store.load_codes("other").await.unwrap().is_empty());
    store
        .forget_codes("saas", std::slice::from_ref(&exchanged.digest))
        .await
        .unwrap();
    assert_eq!(store.load_codes("saas").await.unwrap(), vec![other]);
    assert_eq!(
        store.load_code("saas", &exchanged.digest).await.unwrap(),
        None
    );
    assert!(store.load_code("saas", "../ticket").await.is_err());
    // One instance: every claim is granted.
    assert!(store
        .claim_code("saas", &exchanged.digest, Duration::from_secs(5))
        .await
        .unwrap());
}
