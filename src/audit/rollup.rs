//! Token reads counted per client, credential and minute, so the trail of a server answering
//! tens of thousands of reads a second is a few lines a minute, not a line per read.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use crate::secret::Fingerprint;

/// At most this many distinct fingerprints are listed per line: a credential is served one or
/// two tokens a minute (the current one, and its successor at a refresh); more means a storm of
/// revokes, and the count still says how many reads there were.
const MAX_FINGERPRINTS: usize = 8;

/// At most this many (client, credential) pairs are counted per minute; reads past it are
/// counted under the pair `("*", "*")` so a client with 100,000 authorizers cannot make one
/// minute's roll-up hold unbounded memory, and no read goes unseen.
const MAX_PAIRS: usize = 200_000;

/// One roll-up line's numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reads {
    pub client: String,
    pub credential: String,
    pub count: u64,
    pub fingerprints: Vec<String>,
}

#[derive(Default)]
struct Tally {
    count: u64,
    fingerprints: BTreeSet<[u8; 4]>,
}

/// The current minute's reads. Counting a read that was seen before in the minute allocates
/// nothing: the maps are keyed by client, then credential, and looked up by `&str`.
#[derive(Default)]
pub struct Rollup {
    minute: Mutex<Minute>,
}

#[derive(Default)]
struct Minute {
    by_client: HashMap<String, HashMap<String, Tally>>,
    pairs: usize,
}

impl Rollup {
    /// Counts one read of `credential` by `client`, served `token` (by fingerprint).
    pub fn count(&self, client: &str, credential: &str, token: Fingerprint) {
        let mut minute = self.minute.lock().unwrap_or_else(|p| p.into_inner());
        let Minute { by_client, pairs } = &mut *minute;
        let known = by_client
            .get(client)
            .is_some_and(|c| c.contains_key(credential));
        let (client, credential) = if known || *pairs < MAX_PAIRS {
            (client, credential)
        } else {
            ("*", "*")
        };
        let credentials = match by_client.get_mut(client) {
            Some(c) => c,
            None => by_client.entry(client.to_owned()).or_default(),
        };
        let tally = match credentials.get_mut(credential) {
            Some(t) => t,
            None => {
                *pairs += 1;
                credentials.entry(credential.to_owned()).or_default()
            }
        };
        tally.count += 1;
        if tally.fingerprints.len() < MAX_FINGERPRINTS {
            tally.fingerprints.insert(token.bytes());
        }
    }

    /// Takes the minute's counts (sorted by client, then credential) and starts a new minute.
    pub fn take(&self) -> Vec<Reads> {
        let minute = std::mem::take(&mut *self.minute.lock().unwrap_or_else(|p| p.into_inner()));
        let mut lines: Vec<Reads> = minute
            .by_client
            .into_iter()
            .flat_map(|(client, credentials)| {
                credentials
                    .into_iter()
                    .map(move |(credential, tally)| Reads {
                        client: client.clone(),
                        credential,
                        count: tally.count,
                        fingerprints: tally.fingerprints.iter().map(hex::encode).collect(),
                    })
            })
            .collect();
        lines.sort_by(|a, b| (&a.client, &a.credential).cmp(&(&b.client, &b.credential)));
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_counted_per_client_and_credential_with_the_tokens_served() {
        let rollup = Rollup::default();
        let t1 = Fingerprint::of("TOKEN-1");
        let t2 = Fingerprint::of("TOKEN-2");
        for _ in 0..1000 {
            rollup.count("crm", "shop", t1);
        }
        rollup.count("crm", "shop", t2);
        rollup.count("crm", "blog", t1);
        rollup.count("erp", "shop", t1);
        let lines = rollup.take();
        let mut fps = vec![t1.to_string(), t2.to_string()];
        fps.sort();
        assert_eq!(
            lines,
            vec![
                Reads {
                    client: "crm".into(),
                    credential: "blog".into(),
                    count: 1,
                    fingerprints: vec![t1.to_string()],
                },
                Reads {
                    client: "crm".into(),
                    credential: "shop".into(),
                    count: 1001,
                    fingerprints: fps,
                },
                Reads {
                    client: "erp".into(),
                    credential: "shop".into(),
                    count: 1,
                    fingerprints: vec![t1.to_string()],
                },
            ]
        );
        assert!(rollup.take().is_empty(), "taking starts a new minute");
    }

    #[test]
    fn fingerprints_per_line_are_bounded_but_every_read_is_counted() {
        let rollup = Rollup::default();
        for i in 0..100 {
            rollup.count("crm", "shop", Fingerprint::of(&format!("T{i}")));
        }
        let lines = rollup.take();
        assert_eq!(lines[0].count, 100);
        assert_eq!(lines[0].fingerprints.len(), MAX_FINGERPRINTS);
    }

    #[test]
    fn pairs_past_the_bound_are_counted_together() {
        let rollup = Rollup::default();
        let t = Fingerprint::of("T");
        for i in 0..MAX_PAIRS + 10 {
            rollup.count("crm", &format!("wx{i}"), t);
        }
        // A pair already counted this minute keeps its own line.
        rollup.count("crm", "wx0", t);
        let lines = rollup.take();
        assert_eq!(lines.len(), MAX_PAIRS + 1);
        let overflow = lines.iter().find(|l| l.client == "*").unwrap();
        assert_eq!(overflow.count, 10);
        let first = lines.iter().find(|l| l.credential == "wx0").unwrap();
        assert_eq!(first.count, 2);
    }
}
