//! Which record and field each sealed value of the stores is bound to, and the error of a
//! stored value that does not open.
//!
//! A binding names what a record *is*, never where it is kept: the embedded file, Redis and
//! the Redis store's local copy write the same record under different keys, and a record
//! copied from one to the other (the write-back) must still open. So an app's token is bound to
//! its appid (`token/{appid}`), as its Redis key is, and not to the embedded file's key name;
//! an authorizer to `platform/{name}/authorizer/{appid}`, whichever store holds it.

use std::fmt;

use super::platform::PlatformStore;
use crate::seal::{Binding, Keyring, OpenError};

/// The record of a token (an app's, a ticket's, a component's or an authorizer's), by the
/// appid its stores key it with ([`super::AppKey::appid`]).
pub fn token_record(appid: &str) -> String {
    format!("token/{appid}")
}

/// A platform's verify ticket.
pub fn ticket_record(platform: &str) -> String {
    format!("platform/{platform}/ticket")
}

/// One authorizer of a platform.
pub fn authorizer_record(platform: &str, appid: &str) -> String {
    format!("platform/{platform}/authorizer/{appid}")
}

/// One authorization code of a platform, by the SHA-256 of the code.
pub fn code_record(platform: &str, digest: &str) -> String {
    format!("platform/{platform}/code/{digest}")
}

/// One stored push of another kind: no key names it, so its kind and arrival time do (both
/// are in the record beside the sealed XML).
pub fn event_record(platform: &str, info_type: &str, received_at_ms: u64) -> String {
    format!("platform/{platform}/event/{info_type}/{received_at_ms}")
}

/// Seals `plaintext` as the `field` of `record`.
pub fn seal(ring: &Keyring, record: &str, field: &str, plaintext: &str) -> String {
    ring.seal(Binding { record, field }, plaintext)
}

/// Opens the `field` of `record`, or says which record and field did not open and why.
pub fn open(
    ring: &Keyring,
    record: &str,
    field: &'static str,
    stored: &str,
) -> Result<String, Unreadable> {
    ring.open(Binding { record, field }, stored)
        .map(|v| v.into_owned())
        .map_err(|error| Unreadable {
            record: record.to_string(),
            field,
            error,
        })
}

/// A stored value that does not open: sealed under a key this instance lacks, altered or
/// moved from another record, or plaintext where encryption is required. Never "no record":
/// token records that say this are refetched and counted (`op="decrypt"`), and a platform
/// record that says this stops the start-up, because treating a refresh token as absent would
/// lose its account. The message names the record, the field and the key id, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub record: String,
    pub field: &'static str,
    pub error: OpenError,
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {} {}", self.field, self.record, self.error)
    }
}

impl std::error::Error for Unreadable {}

/// The [`Unreadable`] in an error's chain, if that is what it is (rather than an unreachable
/// store or a corrupt record).
pub fn unreadable_in(e: &anyhow::Error) -> Option<&Unreadable> {
    e.chain().find_map(|c| c.downcast_ref::<Unreadable>())
}

/// What an operator is told when a record does not open: which key to configure.
pub fn remedy(u: &Unreadable) -> &'static str {
    match u.error {
        OpenError::UnknownKey(_) => {
            "add that key to store.previous_keys_env or store.previous_key_files (or make it store.encryption_key_*)"
        }
        OpenError::Plaintext => {
            "run `wxtoken rekey`: it seals plaintext records under the current key"
        }
        OpenError::Forged(_) | OpenError::Malformed => {
            "the record was altered or copied from another one: restore it from a backup, or remove it"
        }
    }
}

/// Refuses to start a platform whose authorization codes do not open: they are resumed in the
/// background after the start, which would log the error and go on without them. (The verify
/// ticket and the authorizers need no check here: `Platform::start` loads them and stops on
/// one that does not open.) Other errors (an unreachable Redis) are left to the loads that
/// follow, as before.
pub async fn check_platform_records(
    store: &dyn PlatformStore,
    platform: &str,
) -> anyhow::Result<()> {
    if let Err(e) = store.load_codes(platform).await {
        if let Some(u) = unreadable_in(&e) {
            anyhow::bail!("platform `{platform}`: {u}; {}", remedy(u));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::{StoreKey, KEY_LEN};

    #[test]
    fn an_unreadable_value_names_the_record_field_and_key_id_never_the_value() {
        let writer = Keyring::new(Some(StoreKey::from_bytes(&[1; KEY_LEN])), vec![], false);
        let reader = Keyring::new(Some(StoreKey::from_bytes(&[2; KEY_LEN])), vec![], false);
        let record = authorizer_record("saas", "wx1");
        let sealed = seal(&writer, &record, "refresh_token", "REFRESH-SECRET");
        let err = open(&reader, &record, "refresh_token", &sealed).unwrap_err();
        let id = StoreKey::from_bytes(&[1; KEY_LEN]).id();
        let text = err.to_string();
        assert!(text.contains(&format!("key id {id}")), "{text}");
        assert!(text.contains("platform/saas/authorizer/wx1"), "{text}");
        assert!(
            !text.contains("REFRESH") && !text.contains(&sealed),
            "{text}"
        );
        let any = anyhow::Error::new(err.clone()).context("loading");
        assert_eq!(unreadable_in(&any), Some(&err));
        assert!(unreadable_in(&anyhow::anyhow!("Redis read timed out")).is_none());
    }
}
