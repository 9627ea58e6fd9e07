//! The Open Platform's gauges, read from the running platforms at every scrape:
//! `wxtoken_platform_ticket_age_seconds{platform}` and `wxtoken_authorizers{platform,state}`.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntGaugeVec, Opts};

/// One platform as a scrape sees it.
pub struct ScrapedPlatform {
    pub name: String,
    /// Seconds since the last verify ticket arrived; `None` before the first.
    pub ticket_age: Option<f64>,
    /// Authorizers by state: active (a token actor keeps it fresh), idle, revoked,
    /// needs_reauth.
    pub authorizers: [(&'static str, usize); 4],
}

pub type PlatformSource = Box<dyn Fn() -> Vec<ScrapedPlatform> + Send + Sync>;

pub struct PlatformCollector {
    source: PlatformSource,
    ticket_age: GaugeVec,
    authorizers: IntGaugeVec,
    descs: Vec<Desc>,
}

impl PlatformCollector {
    pub fn new(source: PlatformSource) -> PlatformCollector {
        let ticket_age = GaugeVec::new(
            Opts::new(
                "wxtoken_platform_ticket_age_seconds",
                "Seconds since the platform's last component_verify_ticket push (WeChat pushes about every 10 minutes; a ticket is good for 12 hours).",
            ),
            &["platform"],
        )
        .expect("valid metric");
        let authorizers = IntGaugeVec::new(
            Opts::new(
                "wxtoken_authorizers",
                "Authorized accounts of the platform, by state (active: kept fresh now; idle; revoked; needs_reauth).",
            ),
            &["platform", "state"],
        )
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
