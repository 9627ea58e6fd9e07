//! The redacted rendering of the effective configuration (`check-config`): every setting, and
//! for each secret where it came from instead of its value.

use std::fmt;

use secrecy::ExposeSecret;

use super::{
    AppKind, AppScope, AuthorizerRefresh, Grant, NodeAddr, RedisAuth, RedisEndpoint, Settings,
    StoreSettings,
};

/// `redis://user:pass@host:6379/0` -> `redis://host:6379/0`: what may be printed.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
            format!("{scheme}://{rest}")
        }
        None => "(not a URL)".into(),
    }
}

impl Settings {
    /// A TOML rendering of the effective configuration with every secret redacted.
    pub fn redacted_toml(&self) -> String {
        use fmt::Write;
        let mut out = String::new();
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let _ = writeln!(
            out,
            "[server]\nlisten = {}",
            q(&self.server.listen.to_string())
        );
        let _ = writeln!(
            out,
            "shutdown_timeout_secs = {}",
            self.server.shutdown_timeout.as_secs()
        );
        let _ = writeln!(
            out,
            "body_timeout_secs = {}\nmax_connections_per_worker = {}\nreadiness = {}\n",
            self.server.body_timeout.as_secs(),
            self.server.max_connections_per_worker.unwrap_or(0),
            q(self.server.readiness.as_str())
        );
        let _ = writeln!(out, "[upstream]\nbase_url = {}", q(&self.upstream.base_url));
        let _ = writeln!(out, "wecom_base_url = {}", q(&self.upstream.wecom_base_url));
        let _ = writeln!(out, "timeout_secs = {}", self.upstream.timeout.as_secs());
        let _ = writeln!(
            out,
            "min_token_lifetime_secs = {}",
            self.upstream.min_token_lifetime.as_secs()
        );
        let _ = writeln!(
            out,
            "max_concurrent = {}\nmax_per_second = {}",
            self.upstream.max_concurrent, self.upstream.max_per_second
        );
        if let Some(ca) = &self.upstream.ca_file {
            let _ = writeln!(out, "ca_file = {}", q(&ca.display().to_string()));
        }
        let r = &self.refresh;
        let _ = writeln!(
            out,
            "\n[refresh]\nmargin_secs = {}\nmin_interval_secs = {}\nretry_min_secs = {}\nretry_max_secs = {}\nreported_refetches_per_hour = {}\n",
            r.margin.as_secs(),
            r.min_interval.as_secs(),
            r.retry_min.as_secs(),
            r.retry_max.as_secs(),
            r.reported_refetches_per_hour
        );
        match &self.store {
            StoreSettings::Embedded { path } => {
                let _ = writeln!(
                    out,
                    "[store]\nkind = \"embedded\"\npath = {}",
                    q(&path.display().to_string())
                );
            }
            StoreSettings::Redis(r) => {
                let _ = writeln!(out, "[store]\nkind = \"redis\"");
                let list = |nodes: &[NodeAddr]| {
                    let items: Vec<String> = nodes.iter().map(|n| q(&n.to_string())).collect();
                    format!("[{}]", items.join(", "))
                };
                let auth = |out: &mut String, a: &RedisAuth| {
                    if let Some(u) = &a.username {
                        let _ = writeln!(out, "username = {}", q(u));
                    }
                    if let Some((_, source)) = &a.password {
                        let _ = writeln!(out, "password = {}", q(&source.to_string()));
                    }
                };
                match &r.endpoint {
                    RedisEndpoint::Url { url, source } => {
                        let _ = writeln!(
                            out,
                            "url = {}",
                            q(&format!("{} ({source})", redact_url(url.expose_secret())))
                        );
                    }
                    RedisEndpoint::Sentinel {
                        sentinels,
                        master,
                        auth: a,
                        sentinel_password,
                    } => {
                        let _ = writeln!(
                            out,
                            "sentinels = {}\nsentinel_master = {}",
                            list(sentinels),
                            q(master)
                        );
                        if let Some((_, source)) = sentinel_password {
                            let _ = writeln!(out, "sentinel_password = {}", q(&source.to_string()));
                        }
                        auth(&mut out, a);
                    }
                    RedisEndpoint::Cluster { nodes, auth: a } => {
                        let _ = writeln!(out, "cluster_nodes = {}", list(nodes));
                        auth(&mut out, a);
                    }
                }
                if let Some(tls) = &r.tls {
                    // With a URL its scheme says TLS; `tls` is the key of the other topologies.
                    if !matches!(r.endpoint, RedisEndpoint::Url { .. }) {
                        let _ = writeln!(out, "tls = true");
                    }
                    if let Some(ca) = &tls.ca_file {
                        let _ = writeln!(out, "tls_ca_file = {}", q(&ca.display().to_string()));
                    }
                    if let Some((cert, key)) = &tls.client {
                        let _ = writeln!(
                            out,
                            "tls_cert_file = {}\ntls_key_file = {}",
                            q(&cert.display().to_string()),
                            q(&key.display().to_string())
                        );
                    }
                }
                let _ = writeln!(
                    out,
                    "key_prefix = {}\nlock_ttl_secs = {}\npoll_secs = {}\ninstance = {}{}",
                    q(&r.key_prefix),
                    r.lock_ttl.as_secs(),
                    r.poll_interval.as_secs(),
                    q(&r.instance),
                    r.local_path.as_ref().map_or(String::new(), |p| format!(
                        "\nlocal_path = {}",
                        q(&p.display().to_string())
                    ))
                );
            }
        }
        let _ = writeln!(
            out,
            "\n[metrics]\nper_app = {}",
            q(self.metrics.per_app.as_str())
        );
        let extra: Vec<String> = self
            .proxy
            .prefixes
            .iter()
            .filter(|p| !super::WECHAT_API_PREFIXES.contains(&p.as_str()))
            .map(|p| q(p))
            .collect();
        let _ = writeln!(
            out,
            "\n[proxy]\nextra_prefixes = [{}]\nmax_body_bytes = {}\ntimeout_secs = {}\nmax_concurrent = {}\nanonymous_max_concurrent = {}",
            extra.join(", "),
            self.proxy.max_body_bytes,
            self.proxy.timeout.as_secs(),
            self.proxy.max_concurrent,
            self.proxy.anonymous_max_concurrent
        );
        for app in &self.apps {
            let id = match app.kind {
                AppKind::Official(grant) => format!(
                    "kind = \"official\"\ngrant = {}\nappid = {}",
                    q(match grant {
                        Grant::ClientCredential => "client_credential",
                        Grant::Stable => "stable",
                    }),
                    q(&app.appid)
                ),
                AppKind::Wecom => format!("kind = \"wecom\"\ncorpid = {}", q(&app.appid)),
            };
            let tickets: Vec<String> = app.tickets.iter().map(|t| q(t.as_str())).collect();
            let _ = writeln!(
                out,
                "\n[[apps]]\nname = {}\n{id}\nsecret = {}\ndaily_quota = {}\ntickets = [{}]",
                q(&app.name),
                q(&app.secret_source.to_string()),
                app.daily_quota,
                tickets.join(", ")
            );
        }
        for p in &self.platforms {
            let window = match p.authorizer_refresh {
                AuthorizerRefresh::Active { window } => {
                    format!("\nactive_window_secs = {}", window.as_secs())
                }
                AuthorizerRefresh::All => String::new(),
            };
            let _ = writeln!(
                out,
                "\n[[platforms]]\nname = {}\ncomponent_appid = {}\ncomponent_secret = {}\n\
                 token = {}\nencoding_aes_key = {}\nauthorizer_refresh = {}{window}",
                q(&p.name),
                q(&p.component_appid),
                q(&p.component_secret_source.to_string()),
                q(&p.token_source.to_string()),
                q(&p.encoding_aes_key_source.to_string()),
                q(p.authorizer_refresh.as_str()),
            );
        }
        // A scope of nothing is a list the client left out (an empty one is refused), so it
        // is left out here too.
        let scope = |s: &AppScope| match s {
            AppScope::All => Some("[\"*\"]".to_string()),
            AppScope::Only(set) if set.is_empty() => None,
            AppScope::Only(set) => {
                let mut v: Vec<_> = set.iter().map(|s| q(s)).collect();
                v.sort();
                Some(format!("[{}]", v.join(", ")))
            }
        };
        for c in &self.clients {
            let mut lists = String::new();
            if let Some(apps) = scope(&c.apps) {
                let _ = write!(lists, "\napps = {apps}");
            }
            if let Some(platforms) = scope(&c.platforms) {
                let _ = write!(lists, "\nplatforms = {platforms}");
            }
            let _ = writeln!(
                out,
                "\n[[clients]]\nname = {}\nkey = {}{lists}\nadmin = {}\nproxy = {}",
                q(&c.name),
                q(&c.key_source.to_string()),
                c.admin,
                c.proxy
            );
        }
        out
    }
}
