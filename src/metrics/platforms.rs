//! The gauges of an account family, read from the running services at every scrape: the Open
//! Platform's (`wxtoken_platform_ticket_age_seconds{platform}`,
//! `wxtoken_authorizers{platform,state}`) and WeCom suites' (`wxtoken_wecom_suite_ticket_age_seconds{suite}`,
//! `wxtoken_wecom_corps{suite,state}`): both are a pushed ticket and accounts by state.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntGaugeVec, Opts};

/// One platform or suite as a scrape sees it.
pub struct ScrapedPlatform {
    pub name: String,
    /// Seconds since the last pushed ticket arrived; `None` before the first.
    pub ticket_age: Option<f64>,
    /// Accounts (authorizers, corps) by state: active (a token actor keeps it fresh), idle,
    /// revoked, needs_reauth.
    pub authorizers: [(&'static str, usize); 4],
}

impl ScrapedPlatform {
    /// `name`'s line, its accounts by state: `[active, idle, revoked, needs_reauth]`.
    pub fn new(name: &str, ticket_age: Option<f64>, by_state: [usize; 4]) -> ScrapedPlatform {
        let [active, idle, revoked, needs_reauth] = by_state;
        ScrapedPlatform {
            name: name.to_string(),
            ticket_age,
            authorizers: [
                ("active", active),
                ("idle", idle),
                ("revoked", revoked),
                ("needs_reauth", needs_reauth),
            ],
        }
    }
}

pub type PlatformSource = Box<dyn Fn() -> Vec<ScrapedPlatform> + Send + Sync>;

/// The names of one family's series.
pub struct FamilyNames {
    /// The label naming the service: `platform` or `suite`.
    pub label: &'static str,
    pub ticket_age: (&'static str, &'static str),
    pub accounts: (&'static str, &'static str),
}

/// The Open Platform's.
pub const PLATFORMS: FamilyNames = FamilyNames {
    label: "platform",
    ticket_age: (
        "wxtoken_platform_ticket_age_seconds",
        "Seconds since the platform's last component_verify_ticket push (WeChat pushes about every 10 minutes; a ticket is good for 12 hours).",
    ),
    accounts: (
        "wxtoken_authorizers",
        "Authorized accounts of the platform, by state (active: kept fresh now; idle; revoked; needs_reauth).",
    ),
};

/// WeCom suites'.
pub const WECOM_SUITES: FamilyNames = FamilyNames {
    label: "suite",
    ticket_age: (
        "wxtoken_wecom_suite_ticket_age_seconds",
        "Seconds since the WeCom suite's last suite_ticket callback (WeCom pushes every 10 minutes; a ticket is honoured 30).",
    ),
    accounts: (
        "wxtoken_wecom_corps",
        "Corps that installed the WeCom suite, by state (active: kept fresh now; idle; revoked; needs_reauth).",
    ),
};

pub struct PlatformCollector {
    source: PlatformSource,
    ticket_age: GaugeVec,
    authorizers: IntGaugeVec,
    descs: Vec<Desc>,
}

impl PlatformCollector {
    pub fn new(names: &FamilyNames, source: PlatformSource) -> PlatformCollector {
        let (age, age_help) = names.ticket_age;
        let ticket_age =
            GaugeVec::new(Opts::new(age, age_help), &[names.label]).expect("valid metric");
        let (accounts, accounts_help) = names.accounts;
        let authorizers =
            IntGaugeVec::new(Opts::new(accounts, accounts_help), &[names.label, "state"])
                .expect("valid metric");
        let descs = ticket_age
            .desc()
            .into_iter()
            .chain(authorizers.desc())
            .cloned()
            .collect();
        PlatformCollector {
            source,
            ticket_age,
            authorizers,
            descs,
        }
    }
}

impl Collector for PlatformCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // Rebuilt from scratch each time: a platform gone since the last scrape leaves nothing.
        self.ticket_age.reset();
        self.authorizers.reset();
        for p in (self.source)() {
            if let Some(age) = p.ticket_age {
                self.ticket_age.with_label_values(&[&p.name]).set(age);
            }
            for (state, n) in p.authorizers {
                self.authorizers
                    .with_label_values(&[&p.name, state])
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        let mut out = self.ticket_age.collect();
        out.extend(self.authorizers.collect());
        out
    }
}
