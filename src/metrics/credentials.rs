//! The per-credential series, collected at scrape: gauges computed from the published statuses,
//! and the per-app counters shown only for credentials that still run.
//!
//! Nothing here is set or removed by hand. Every scrape asks the source for the running
//! credentials and computes each gauge from what their actors last published, in one pass, so
//! a clock-dependent value (seconds left, token age) is exact whenever Prometheus looks, and a
//! credential that a reload removed is absent from every family because it is no longer listed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};

use crate::token::AppStatus;
use crate::upstream::ErrorClass;

/// One running credential (an app's token, or one of its tickets) as a scrape sees it.
#[derive(Clone, Debug)]
pub struct ScrapedCredential {
    /// The `app` label: the app's name, or `<app>:<type>_ticket`.
    pub label: String,
    /// What its actor last published.
    pub status: Arc<AppStatus>,
    /// The app's configured daily quota of token calls (`wxtoken_quota_daily_limit`).
    pub daily_quota: u64,
}

/// Lists the running credentials; called once per scrape.
pub type StatusSource = Box<dyn Fn() -> Vec<ScrapedCredential> + Send + Sync>;

/// One gauge family: its name and help (unchanged from the hand-set gauges they replace, since
/// alerts, the dashboard and the README use them) and how its value follows from a status.
struct GaugeDef {
    name: &'static str,
    help: &'static str,
    value: fn(&ScrapedCredential, SystemTime) -> f64,
}

/// Unix seconds of `t`, whole seconds; 0 before the epoch.
fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        .floor()
}

const GAUGES: [GaugeDef; 8] = [
    GaugeDef {
        name: "wxtoken_token_seconds_left",
        help: "Seconds until the served token expires; 0 when there is none.",
        value: |c, now| {
            c.status
                .token
                .as_ref()
                .map_or(0.0, |t| t.remaining(now).as_secs_f64().floor())
        },
    },
    GaugeDef {
        name: "wxtoken_token_expiry_timestamp_seconds",
        help: "Unix time at which the served token expires; 0 when there is none.",
        value: |c, _| c.status.token.as_ref().map_or(0.0, |t| unix_secs(t.expires_at)),
    },
    GaugeDef {
        name: "wxtoken_token_age_seconds",
        help: "Seconds since the served token was fetched; 0 when there is none.",
        value: |c, now| {
            c.status
                .token
                .as_ref()
                .map_or(0.0, |t| t.age(now).as_secs_f64().floor())
        },
    },
    GaugeDef {
        name: "wxtoken_token_refresh_due_timestamp_seconds",
        help: "Unix time at which the served token is due for its proactive refresh; 0 when there is no token. Past due means refreshing is failing.",
        value: |c, _| match (&c.status.token, c.status.refresh_due) {
            (Some(_), Some(due)) => unix_secs(due),
            _ => 0.0,
        },
    },
    GaugeDef {
        name: "wxtoken_token_generation",
        help: "Generation of the served token: goes up by one with every fetch.",
        value: |c, _| c.status.token.as_ref().map_or(0.0, |t| t.generation as f64),
    },
    GaugeDef {
        name: "wxtoken_quota_used_today",
        help: "Calls to WeChat's token endpoint answered today (days start at 00:00 UTC+8).",
        value: |c, now| c.status.quota.used_on(now) as f64,
    },
    GaugeDef {
        name: "wxtoken_quota_daily_limit",
        help: "Daily limit of token calls for the app (configured, WeChat's default 2000).",
        value: |c, _| c.daily_quota as f64,
    },
    GaugeDef {
        name: "wxtoken_upstream_config_error",
        help: "1 while the last fetch failed with a configuration error (wrong secret, IP whitelist...), else 0.",
        value: |c, _| {
            let config = c
                .status
                .last_failure
                .as_ref()
                .is_some_and(|f| f.class == ErrorClass::Config);
            f64::from(u8::from(config))
        },
    },
];

/// The gauge families for `credentials` at `now`, in one pass over the credentials.
pub fn gauge_families(credentials: &[ScrapedCredential], now: SystemTime) -> Vec<MetricFamily> {
    let mut series: Vec<Vec<Metric>> = GAUGES
        .iter()
        .map(|_| Vec::with_capacity(credentials.len()))
        .collect();
    for c in credentials {
        for (def, out) in GAUGES.iter().zip(series.iter_mut()) {
            let mut label = LabelPair::default();
            label.set_name("app".to_owned());
            label.set_value(c.label.clone());
            let mut gauge = Gauge::default();
            gauge.set_value((def.value)(c, now));
            let mut metric = Metric::from_gauge(gauge);
            metric.set_label(vec![label]);
            out.push(metric);
        }
    }
    GAUGES
        .iter()
        .zip(series)
        .map(|(def, metrics)| {
            let mut family = MetricFamily::default();
            family.set_name(def.name.to_owned());
            family.set_help(def.help.to_owned());
            family.set_field_type(MetricType::GAUGE);
            family.set_metric(metrics);
            family
        })
        .collect()
}

/// The registered collector of every per-credential family.
pub struct CredentialCollector {
    /// Set once the running apps exist (after the metrics, which the actors need first).
    source: Arc<OnceLock<StatusSource>>,
    gauge_descs: Vec<Desc>,
    /// The per-app counter and histogram families. They count events, so the domain verbs
    /// update them; at scrape only the series of running credentials are shown, so an event
    /// that a retiring actor counted after its app was removed cannot bring the app back.
    per_app: Vec<Box<dyn Collector>>,
}

impl CredentialCollector {
    pub fn new(source: Arc<OnceLock<StatusSource>>, per_app: Vec<Box<dyn Collector>>) -> Self {
        let gauge_descs = GAUGES
            .iter()
            .map(|g| {
                Desc::new(
                    g.name.to_owned(),
                    g.help.to_owned(),
                    vec!["app".to_owned()],
                    HashMap::new(),
                )
                .expect("valid metric")
            })
            .collect();
        CredentialCollector {
            source,
            gauge_descs,
            per_app,
        }
    }
}

impl Collector for CredentialCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge_descs
            .iter()
            .chain(self.per_app.iter().flat_map(|c| c.desc()))
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // Without a source (a `Metrics` used on its own, as in unit tests) there are no
        // statuses to compute gauges from, and no list of live credentials to filter by.
        let credentials = self.source.get().map(|source| source());
        let mut out = match &credentials {
            Some(c) => gauge_families(c, SystemTime::now()),
            None => Vec::new(),
        };
        let live: Option<HashSet<&str>> = credentials
            .as_ref()
            .map(|c| c.iter().map(|c| c.label.as_str()).collect());
        for collector in &self.per_app {
            for mut family in collector.collect() {
                if let Some(live) = &live {
                    family.mut_metric().retain(|m| {
                        m.get_label()
                            .iter()
                            .any(|l| l.name() == "app" && live.contains(l.value()))
                    });
                }
                out.push(family);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::token::{AccessToken, FailureInfo, QuotaUsage, TokenRecord};

    fn value(families: &[MetricFamily], name: &str, app: &str) -> Option<f64> {
        families
            .iter()
            .find(|f| f.name() == name)?
            .get_metric()
            .iter()
            .find(|m| m.get_label().iter().any(|l| l.value() == app))
            .map(|m| m.get_gauge().get_value())
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    const NOW: u64 = 1_750_000_000;

    fn credential(label: &str, status: AppStatus) -> ScrapedCredential {
        ScrapedCredential {
            label: label.into(),
            status: Arc::new(status),
            daily_quota: 500,
        }
    }

    fn with_token() -> AppStatus {
        AppStatus {
            token: Some(Arc::new(TokenRecord {
                appid: "wx1".into(),
                token: AccessToken::new("t"),
                fetched_at: at(NOW - 100),
                expires_at: at(NOW + 7100),
                generation: 3,
            })),
            last_failure: None,
            quota: QuotaUsage {
                day: QuotaUsage::day_of(at(NOW)),
                used: 7,
            },
            refresh_due: Some(at(NOW + 6500)),
        }
    }

    fn failure(class: ErrorClass) -> Option<Arc<FailureInfo>> {
        Some(Arc::new(FailureInfo {
            errcode: Some(40125),
            reason: "40125".into(),
            class,
            message: "invalid appsecret".into(),
        }))
    }

    #[test]
    fn no_token_reads_zero_and_keeps_the_configured_limit() {
        let f = gauge_families(&[credential("shop", AppStatus::default())], at(NOW));
        assert_eq!(f.len(), GAUGES.len());
        for name in [
            "wxtoken_token_seconds_left",
            "wxtoken_token_expiry_timestamp_seconds",
            "wxtoken_token_age_seconds",
            "wxtoken_token_refresh_due_timestamp_seconds",
            "wxtoken_token_generation",
            "wxtoken_quota_used_today",
            "wxtoken_upstream_config_error",
        ] {
            assert_eq!(value(&f, name, "shop"), Some(0.0), "{name}");
        }
        assert_eq!(value(&f, "wxtoken_quota_daily_limit", "shop"), Some(500.0));
    }

    #[test]
    fn a_valid_token_is_read_at_the_scrape_time() {
        let c = [credential("shop", with_token())];
        let f = gauge_families(&c, at(NOW));
        let get = |n: &str| value(&f, n, "shop").unwrap();
        assert_eq!(get("wxtoken_token_seconds_left"), 7100.0);
        assert_eq!(
            get("wxtoken_token_expiry_timestamp_seconds"),
            (NOW + 7100) as f64
        );
        assert_eq!(get("wxtoken_token_age_seconds"), 100.0);
        assert_eq!(
            get("wxtoken_token_refresh_due_timestamp_seconds"),
            (NOW + 6500) as f64
        );
        assert_eq!(get("wxtoken_token_generation"), 3.0);
        assert_eq!(get("wxtoken_quota_used_today"), 7.0);
        assert_eq!(get("wxtoken_upstream_config_error"), 0.0);

        // The same status a minute later: the clock-dependent gauges moved, the rest did not.
        let later = gauge_families(&c, at(NOW + 60));
        assert_eq!(
            value(&later, "wxtoken_token_seconds_left", "shop"),
            Some(7040.0)
        );
        assert_eq!(
            value(&later, "wxtoken_token_age_seconds", "shop"),
            Some(160.0)
        );
        assert_eq!(
            value(&later, "wxtoken_token_expiry_timestamp_seconds", "shop"),
            Some((NOW + 7100) as f64)
        );
        // On the next quota day (UTC+8) the count starts again.
        let next_day = gauge_families(&c, at(NOW + 86_400));
        assert_eq!(
            value(&next_day, "wxtoken_quota_used_today", "shop"),
            Some(0.0)
        );
        // Expired: nothing left, but the token's age and expiry still tell how stale it is.
        let expired = gauge_families(&c, at(NOW + 8000));
        assert_eq!(
            value(&expired, "wxtoken_token_seconds_left", "shop"),
            Some(0.0)
        );
    }

    #[test]
    fn config_error_follows_the_class_of_the_last_failure() {
        let config = AppStatus {
            last_failure: failure(ErrorClass::Config),
            ..with_token()
        };
        let transient = AppStatus {
            last_failure: failure(ErrorClass::Transient),
            ..AppStatus::default()
        };
        let f = gauge_families(
            &[
                credential("shop", config),
                credential("blog", transient),
                credential("news", AppStatus::default()),
            ],
            at(NOW),
        );
        let flag = "wxtoken_upstream_config_error";
        assert_eq!(value(&f, flag, "shop"), Some(1.0));
        assert_eq!(value(&f, flag, "blog"), Some(0.0));
        assert_eq!(value(&f, flag, "news"), Some(0.0));
        // A failing refresh keeps the valid token in the gauges.
        assert_eq!(value(&f, "wxtoken_token_generation", "shop"), Some(3.0));
    }

    #[test]
    fn one_series_per_listed_credential_and_none_for_others() {
        let f = gauge_families(
            &[
                credential("shop", with_token()),
                credential("shop:jsapi_ticket", AppStatus::default()),
            ],
            at(NOW),
        );
        for family in &f {
            assert_eq!(family.get_metric().len(), 2, "{}", family.name());
            assert_eq!(family.get_field_type(), MetricType::GAUGE);
        }
        assert_eq!(value(&f, "wxtoken_token_generation", "blog"), None);
        assert!(gauge_families(&[], at(NOW))
            .iter()
            .all(|f| f.get_metric().is_empty()));
    }
}
