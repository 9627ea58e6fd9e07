//! Validation of `[store]`: the kind, and the embedded store's file; the Redis store's keys are
//! checked in [`super::redis`].

use std::path::PathBuf;

use super::raw::RawStore;
use super::redis::validate_redis;
use super::{ConfigError, StoreSettings, UpstreamSettings};

const DEFAULT_STORE_PATH: &str = "data/wxtoken.redb";

/// `[store]`; `upstream` is there to compare the Redis lock's lifetime with a fetch's.
pub(super) fn validate_store(
    st: RawStore,
    upstream: &UpstreamSettings,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<StoreSettings, ConfigError> {
    match st.kind.as_str() {
        "embedded" => validate_embedded(st),
        "redis" => {
            if st.path.is_some() {
                return Err(ConfigError::at(
                    "store.path",
                    "only used with store.kind = \"embedded\"",
                ));
            }
            validate_redis(st, upstream, lookup_env).map(StoreSettings::Redis)
        }
        other => Err(ConfigError::at(
            "store.kind",
            format!("unknown store `{other}`; expected \"embedded\" or \"redis\""),
        )),
    }
}

/// `kind = "embedded"`: a path, and none of the Redis keys (refused rather than ignored, so a
/// forgotten `kind = "redis"` is noticed).
fn validate_embedded(st: RawStore) -> Result<StoreSettings, ConfigError> {
    let only_redis = [
        ("store.url", st.url.is_some()),
        ("store.url_env", st.url_env.is_some()),
        ("store.url_file", st.url_file.is_some()),
        ("store.key_prefix", st.key_prefix.is_some()),
        ("store.lock_ttl_secs", st.lock_ttl_secs.is_some()),
        ("store.poll_secs", st.poll_secs.is_some()),
        ("store.instance", st.instance.is_some()),
        ("store.local_path", st.local_path.is_some()),
        ("store.sentinels", st.sentinels.is_some()),
        ("store.sentinel_master", st.sentinel_master.is_some()),
        (
            "store.sentinel_password_env",
            st.sentinel_password_env.is_some(),
        ),
        (
            "store.sentinel_password_file",
            st.sentinel_password_file.is_some(),
        ),
        ("store.cluster_nodes", st.cluster_nodes.is_some()),
        ("store.password_env", st.password_env.is_some()),
        ("store.password_file", st.password_file.is_some()),
        ("store.username", st.username.is_some()),
        ("store.tls", st.tls.is_some()),
        ("store.tls_ca_file", st.tls_ca_file.is_some()),
        ("store.tls_cert_file", st.tls_cert_file.is_some()),
        ("store.tls_key_file", st.tls_key_file.is_some()),
    ];
    if let Some((key, _)) = only_redis.iter().find(|(_, set)| *set) {
        return Err(ConfigError::at(
            key,
            "only used with store.kind = \"redis\"",
        ));
    }
    let path = st.path.unwrap_or_else(|| PathBuf::from(DEFAULT_STORE_PATH));
    if path.as_os_str().is_empty() {
        return Err(ConfigError::at("store.path", "must not be empty"));
    }
    Ok(StoreSettings::Embedded { path })
}
