//! The measured cost of encryption at rest per save and per load: a record encoded and
//! decoded with and without a key. Not a test of behaviour: `scripts/bench-seal` runs it in
//! release mode and prints the figures (docs/performance.md keeps them).

use std::time::{Duration, Instant, SystemTime};

use super::platform::{decode_authorizer_of, encode_authorizer, AuthorizerRecord, AuthorizerState};
use super::{decode, encode, AppKey, Stored};
use crate::seal::{Keyring, StoreKey, KEY_LEN};
use crate::secret::AccessToken;
use crate::status::{QuotaUsage, TokenRecord};

const ROUNDS: u32 = 200_000;

fn per_op(rounds: u32, mut op: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..rounds {
        op();
    }
    start.elapsed() / rounds
}

#[test]
#[ignore = "a benchmark: scripts/bench-seal runs it in release mode"]
fn seal_cost_per_save_and_load() {
    let keyed = Keyring::new(Some(StoreKey::from_bytes(&[7; KEY_LEN])), vec![], false);
    let plain = Keyring::plaintext();
    let now = SystemTime::now();
    let key = AppKey {
        name: "shop".into(),
        appid: "wx0123456789abcdef".into(),
    };
    // WeChat's access tokens are 136-160 characters.
    let token = Stored {
        record: TokenRecord {
            appid: key.appid.clone(),
            token: AccessToken::new("A".repeat(157)),
            fetched_at: now,
            expires_at: now + Duration::from_secs(7200),
            generation: 1,
        },
        quota: QuotaUsage::default(),
        fetched_by: Some("host-1".into()),
        depends_on: None,
    };
    let authorizer = AuthorizerRecord {
        appid: "wxauth000000000001".into(),
        refresh_token: Some(AccessToken::new(format!(
            "refreshtoken@@@{}",
            "R".repeat(80)
        ))),
        func_ids: vec![1, 15, 17],
        state: AuthorizerState::Authorized,
        authorized_at: Some(now),
        last_error: None,
        updated_at: now,
    };
    for (name, ring) in [("plaintext", &plain), ("sealed", &keyed)] {
        let bytes = encode(ring, &token);
        let save = per_op(ROUNDS, || drop(std::hint::black_box(encode(ring, &token))));
        let load = per_op(ROUNDS, || {
            drop(std::hint::black_box(decode(ring, &key, &bytes, now)))
        });
        println!(
            "token record {name}: {} bytes, encode {save:?}, decode {load:?}",
            bytes.len()
        );
        let bytes = encode_authorizer(ring, "saas", &authorizer);
        let appid = authorizer.appid.as_bytes();
        let save = per_op(ROUNDS, || {
            drop(std::hint::black_box(encode_authorizer(
                ring,
                "saas",
                &authorizer,
            )))
        });
        let load = per_op(ROUNDS, || {
            drop(std::hint::black_box(decode_authorizer_of(
                ring, "saas", &bytes, appid,
            )))
        });
        println!(
            "authorizer record {name}: {} bytes, encode {save:?}, decode {load:?}",
            bytes.len()
        );
    }
}
