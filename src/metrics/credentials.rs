//! The per-credential series, collected at scrape: gauges computed from the published statuses,
//! the aggregates over them (`wxtoken_credentials{state}`, `wxtoken_quota_used_ratio_max`), and
//! the per-app counters shown only for credentials that still run.
//!
//! Nothing here is set or removed by hand. Every scrape asks the source for the running
//! credentials and computes each gauge and aggregate from what their actors last published, in
//! one pass, so a clock-dependent value (seconds left, token age) is exact whenever Prometheus
//! looks, and a credential that a reload removed is absent from every family because it is no
//! longer listed. In gauges mode only the gauges marked `in_gauges_mode` are exported per app.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};

use super::state::CredentialState;
use crate::config::MetricsMode;
use crate::status::AppStatus;
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
    /// Whether the label stands for one credential, with gauges of its own. `false` for a
    /// label many actors share (a platform's authorizers): its counters are kept, and no
    /// token gauge or state is made up for it.
    pub gauges: bool,
}

/// Lists the running credentials; called once per scrape.
pub type StatusSource = Box<dyn Fn() -> Vec<ScrapedCredential> + Send + Sync>;

/// One gauge family: its name and help (unchanged from the hand-set gauges they replace, since
/// alerts, the dashboard and the documentation use them) and how its value follows from a status.
struct GaugeDef {
    name: &'static str,
    help: &'static str,
    value: fn(&ScrapedCredential, SystemTime) -> f64,
    /// Exported in gauges mode too: what the alerts need per app (expiry, refresh due,
    /// configuration error).
    in_gauges_mode: bool,
    /// Only for credentials with a known daily limit: a WeCom suite's, corp's or provider's
    /// token has none, and a limit of 0 would read as a quota used up.
    needs_quota: bool,
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
        in_gauges_mode: true,
        needs_quota: false,
    },
    GaugeDef {
        name: "wxtoken_token_expiry_timestamp_seconds",
        help: "Unix time at which the served token expires; 0 when there is none.",
        value: |c, _| c.status.token.as_ref().map_or(0.0, |t| unix_secs(t.expires_at)),
        in_gauges_mode: true,
        needs_quota: false,
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
        in_gauges_mode: false,
        needs_quota: false,
    },
    GaugeDef {
        name: "wxtoken_token_refresh_due_timestamp_seconds",
        help: "Unix time at which the served token is due for its proactive refresh; 0 when there is no token. Past due means refreshing is failing.",
        value: |c, _| match (&c.status.token, c.status.refresh_due) {
            (Some(_), Some(due)) => unix_secs(due),
            _ => 0.0,
        },
        in_gauges_mode: true,
        needs_quota: false,
    },
    GaugeDef {
        name: "wxtoken_token_generation",
        help: "Generation of the served token: goes up by one with every fetch.",
        value: |c, _| c.status.token.as_ref().map_or(0.0, |t| t.generation as f64),
        in_gauges_mode: false,
        needs_quota: false,
    },
    GaugeDef {
        name: "wxtoken_quota_used_today",
        help: "Calls to WeChat's token endpoint answered today (days start at 00:00 UTC+8).",
        value: |c, now| c.status.quota.used_on(now) as f64,
        in_gauges_mode: false,
        needs_quota: true,
    },
    GaugeDef {
        name: "wxtoken_quota_daily_limit",
        help: "Daily limit of token calls for the app (configured, WeChat's default 2000).",
        value: |c, _| c.daily_quota as f64,
        in_gauges_mode: false,
        needs_quota: true,
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
        in_gauges_mode: true,
        needs_quota: false,
    },
];

/// `wxtoken_credentials{state}`.
const STATES_NAME: &str = "wxtoken_credentials";
const STATES_HELP: &str = "Running credentials (tokens and tickets) by state: valid, refreshing (refresh due, no failure yet), failing (served, last fetch failed), expired, no_token.";
/// `wxtoken_quota_used_ratio_max`.
const QUOTA_MAX_NAME: &str = "wxtoken_quota_used_ratio_max";
const QUOTA_MAX_HELP: &str = "The largest share of its daily quota that any running credential has used today (0 to 1 and beyond).";

/// The gauges exported per app in `mode`.
fn gauges_of(mode: MetricsMode) -> impl Iterator<Item = &'static GaugeDef> {
    GAUGES
        .iter()
        .filter(move |g| mode == MetricsMode::Full || g.in_gauges_mode)
}

fn gauge_family(name: &str, help: &str, metrics: Vec<Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.to_owned());
    family.set_help(help.to_owned());
    family.set_field_type(MetricType::GAUGE);
    family.set_metric(metrics);
    family
}

fn gauge(labels: Vec<LabelPair>, value: f64) -> Metric {
    let mut gauge = Gauge::default();
    gauge.set_value(value);
    let mut metric = Metric::from_gauge(gauge);
    metric.set_label(labels);
    metric
}

fn label(name: &str, value: String) -> LabelPair {
    let mut label = LabelPair::default();
    label.set_name(name.to_owned());
    label.set_value(value);
    label
}

/// The per-app gauge families of `mode` for `credentials` at `now`, then the aggregates over
/// them, all in one pass over the credentials.
pub fn gauge_families(
    credentials: &[ScrapedCredential],
    mode: MetricsMode,
    now: SystemTime,
) -> Vec<MetricFamily> {
    let defs: Vec<&GaugeDef> = gauges_of(mode).collect();
    let mut series: Vec<Vec<Metric>> = defs
        .iter()
        .map(|_| Vec::with_capacity(credentials.len()))
        .collect();
    let mut states = [0u64; CredentialState::ALL.len()];
    let mut quota_max: f64 = 0.0;
    for c in credentials.iter().filter(|c| c.gauges) {
        for (def, out) in defs.iter().zip(series.iter_mut()) {
            if def.needs_quota && c.daily_quota == 0 {
                continue;
            }
            out.push(gauge(
                vec![label("app", c.label.clone())],
                (def.value)(c, now),
            ));
        }
        states[CredentialState::of(&c.status, now).index()] += 1;
        if c.daily_quota > 0 {
            quota_max = quota_max.max(c.status.quota.used_on(now) as f64 / c.daily_quota as f64);
        }
    }
    let mut out: Vec<MetricFamily> = defs
        .iter()
        .zip(series)
        .map(|(def, metrics)| gauge_family(def.name, def.help, metrics))
        .collect();
    out.push(gauge_family(
        STATES_NAME,
        STATES_HELP,
        CredentialState::ALL
            .iter()
            .map(|s| {
                gauge(
                    vec![label("state", s.as_str().to_owned())],
                    states[s.index()] as f64,
                )
            })
            .collect(),
    ));
    out.push(gauge_family(
        QUOTA_MAX_NAME,
        QUOTA_MAX_HELP,
        vec![gauge(Vec::new(), quota_max)],
    ));
    out
}

/// The registered collector of every per-credential family.
pub struct CredentialCollector {
    /// Set once the running apps exist (after the metrics, which the actors need first).
    source: Arc<OnceLock<StatusSource>>,
    mode: MetricsMode,
    gauge_descs: Vec<Desc>,
    /// The per-app counter and histogram families. They count events, so the domain verbs
    /// update them; at scrape only the series of running credentials are shown, so an event
    /// that a retiring actor counted after its app was removed cannot bring the app back.
    per_app: Vec<Box<dyn Collector>>,
}

impl CredentialCollector {
    pub fn new(
        source: Arc<OnceLock<StatusSource>>,
        per_app: Vec<Box<dyn Collector>>,
        mode: MetricsMode,
    ) -> Self {
        let desc = |name: &str, help: &str, labels: &[&str]| {
            Desc::new(
                name.to_owned(),
                help.to_owned(),
                labels.iter().map(|l| (*l).to_owned()).collect(),
                HashMap::new(),
            )
            .expect("valid metric")
        };
        let gauge_descs = gauges_of(mode)
            .map(|g| desc(g.name, g.help, &["app"]))
            .chain([
                desc(STATES_NAME, STATES_HELP, &["state"]),
                desc(QUOTA_MAX_NAME, QUOTA_MAX_HELP, &[]),
            ])
            .collect();
        CredentialCollector {
            source,
            mode,
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
            Some(c) => gauge_families(c, self.mode, SystemTime::now()),
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
    use crate::secret::AccessToken;
    use crate::status::{FailureInfo, QuotaUsage, TokenRecord};

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

    fn gauge_families_full(c: &[ScrapedCredential], now: SystemTime) -> Vec<MetricFamily> {
        gauge_families(c, MetricsMode::Full, now)
    }

    const NOW: u64 = 1_750_000_000;

    fn credential(label: &str, status: AppStatus) -> ScrapedCredential {
        ScrapedCredential {
            label: label.into(),
            status: Arc::new(status),
            daily_quota: 500,
            gauges: true,
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
        let f = gauge_families_full(&[credential("shop", AppStatus::default())], at(NOW));
        // Every per-app gauge, then the two aggregates.
        assert_eq!(f.len(), GAUGES.len() + 2);
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
        let f = gauge_families_full(&c, at(NOW));
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
        let later = gauge_families_full(&c, at(NOW + 60));
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
        let next_day = gauge_families_full(&c, at(NOW + 86_400));
        assert_eq!(
            value(&next_day, "wxtoken_quota_used_today", "shop"),
            Some(0.0)
        );
        // Expired: nothing left, but the token's age and expiry still tell how stale it is.
        let expired = gauge_families_full(&c, at(NOW + 8000));
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
        let f = gauge_families_full(
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
        let f = gauge_families_full(
            &[
                credential("shop", with_token()),
                credential("shop:jsapi_ticket", AppStatus::default()),
            ],
            at(NOW),
        );
        for family in f.iter().filter(|f| is_per_app(f)) {
            assert_eq!(family.get_metric().len(), 2, "{}", family.name());
            assert_eq!(family.get_field_type(), MetricType::GAUGE);
        }
        assert_eq!(f.iter().filter(|f| is_per_app(f)).count(), GAUGES.len());
        assert_eq!(value(&f, "wxtoken_token_generation", "blog"), None);
        assert!(gauge_families_full(&[], at(NOW))
            .iter()
            .filter(|f| is_per_app(f))
            .all(|f| f.get_metric().is_empty()));
    }

    fn is_per_app(f: &MetricFamily) -> bool {
        f.get_metric()
            .iter()
            .any(|m| m.get_label().iter().any(|l| l.name() == "app"))
            || GAUGES.iter().any(|g| g.name == f.name())
    }

    fn names(f: &[MetricFamily]) -> Vec<&str> {
        f.iter().map(|f| f.name()).collect()
    }

    fn state_counts(f: &[MetricFamily]) -> Vec<(String, f64)> {
        f.iter()
            .find(|f| f.name() == STATES_NAME)
            .expect("wxtoken_credentials")
            .get_metric()
            .iter()
            .map(|m| {
                (
                    m.get_label()[0].value().to_owned(),
                    m.get_gauge().get_value(),
                )
            })
            .collect()
    }

    #[test]
    fn gauges_mode_exports_four_per_app_gauges_and_the_aggregates() {
        let c = [credential("shop", with_token())];
        let f = gauge_families(&c, MetricsMode::Gauges, at(NOW));
        assert_eq!(
            names(&f),
            [
                "wxtoken_token_seconds_left",
                "wxtoken_token_expiry_timestamp_seconds",
                "wxtoken_token_refresh_due_timestamp_seconds",
                "wxtoken_upstream_config_error",
                STATES_NAME,
                QUOTA_MAX_NAME,
            ]
        );
        assert_eq!(
            value(&f, "wxtoken_token_seconds_left", "shop"),
            Some(7100.0)
        );
        let full = gauge_families(&c, MetricsMode::Full, at(NOW));
        assert_eq!(full.len(), GAUGES.len() + 2);
        // Gauges mode is a subset of full mode, with the same values.
        for family in &f {
            let twin = full.iter().find(|g| g.name() == family.name()).unwrap();
            assert_eq!(family, twin);
        }
    }

    #[test]
    fn credentials_are_counted_by_state_in_the_same_pass() {
        let refreshing = AppStatus {
            refresh_due: Some(at(NOW - 5)),
            ..with_token()
        };
        let failing = AppStatus {
            last_failure: failure(ErrorClass::Transient),
            ..refreshing.clone()
        };
        let overdue = AppStatus {
            refresh_due: Some(at(NOW - 8000)),
            ..with_token()
        };
        let c = [
            credential("a", with_token()),
            credential("b", with_token()),
            credential("c", refreshing),
            credential("d", failing),
            credential("e", AppStatus::default()),
            credential("f", overdue),
        ];
        let f = gauge_families(&c, MetricsMode::Gauges, at(NOW));
        let counts = |f: &[MetricFamily]| state_counts(f);
        assert_eq!(
            counts(&f),
            [
                ("valid".to_owned(), 2.0),
                ("refreshing".to_owned(), 2.0),
                ("failing".to_owned(), 1.0),
                ("expired".to_owned(), 0.0),
                ("no_token".to_owned(), 1.0),
            ]
        );
        // Every token expires at NOW + 7100: 8000 s later all five have expired.
        let later = gauge_families(&c, MetricsMode::Full, at(NOW + 8000));
        assert_eq!(
            counts(&later),
            [
                ("valid".to_owned(), 0.0),
                ("refreshing".to_owned(), 0.0),
                ("failing".to_owned(), 0.0),
                ("expired".to_owned(), 5.0),
                ("no_token".to_owned(), 1.0),
            ]
        );
        // Every state is present, at 0 too, so a query for one of them always has data.
        assert_eq!(
            counts(&gauge_families(&[], MetricsMode::Gauges, at(NOW))).len(),
            5
        );
    }

    #[test]
    fn the_quota_aggregate_is_the_largest_share_used() {
        let mut busy = with_token();
        busy.quota.used = 450;
        let c = [
            credential("shop", with_token()),
            credential("blog", busy),
            ScrapedCredential {
                daily_quota: 0,
                ..credential("odd", with_token())
            },
        ];
        let f = gauge_families(&c, MetricsMode::Gauges, at(NOW));
        let max = f.iter().find(|f| f.name() == QUOTA_MAX_NAME).unwrap();
        assert_eq!(max.get_metric()[0].get_gauge().get_value(), 0.9);
        assert!(max.get_metric()[0].get_label().is_empty());
    }
}
