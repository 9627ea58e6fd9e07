//! Builds the application: metrics, store, one actor per app, the listener and the HTTP server.

use std::net::{SocketAddr, TcpListener};

/// Pending connections the kernel queues: a burst of a thousand new clients (a deploy, an
/// invalidation storm) must not overflow it, or their connects are retried only after a second.
const LISTEN_BACKLOG: i32 = 2048;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor as _, Addr};
use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;
use arc_swap::ArcSwap;

use crate::apps::{ActorDeps, Apps};
use crate::audit::Audit;
use crate::clients::ClientKeys;
use crate::config::{ticket_label, Settings, StoreSettings};
use crate::fd_limit;
use crate::http::body::read_chunked_bodies;
use crate::http::fast::RenderCache;
use crate::http::{routes, track_requests, BodyDeadline, ServerState};
use crate::metrics::{Metrics, ScrapedCredential};
use crate::platform::Platform;
use crate::reload::{Reload, Reloader};
use crate::seal::Keyring;
use crate::store::messages::MessageStore;
use crate::store::platform::PlatformStore;
use crate::store::{EmbeddedStore, RedisStore, TokenStore};
use crate::token::actor::DEFAULT_WAIT_LIMIT;
use crate::upstream::UpstreamPool;

/// Knobs that are not configuration: tests and embedders set them.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long a request waits for a fetch before answering without one.
    pub wait_limit: Duration,
    /// Stop gracefully on SIGTERM/SIGINT (the `serve` command); tests stop through the handle.
    pub handle_signals: bool,
    /// HTTP worker threads; `None` lets actix-web pick one per core.
    pub workers: Option<usize>,
    /// The file reloads re-read (SIGHUP, `POST /v1/admin/reload`); `None` disables reloads.
    pub config_path: Option<PathBuf>,
    /// The message hub's claim lease and poll interval.
    pub hub: crate::messages::HubOptions,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            wait_limit: DEFAULT_WAIT_LIMIT,
            handle_signals: true,
            workers: None,
            config_path: None,
            hub: crate::messages::HubOptions::default(),
        }
    }
}

/// A built, listening server that has not been awaited yet.
pub struct Application {
    addr: SocketAddr,
    server: Server,
    state: web::Data<ServerState>,
}

impl Application {
    /// Builds everything and binds `settings.server.listen` (port 0 picks a free port).
    /// Must run inside an actix System.
    pub async fn build(settings: Settings, options: Options) -> anyhow::Result<Application> {
        // First, before the store, upstream and Redis take descriptors of their own.
        let nofile = raise_open_file_limit();
        let metrics = Metrics::new(
            &settings
                .apps
                .iter()
                .map(|a| a.name.clone())
                .collect::<Vec<_>>(),
            settings.metrics.mode(settings.credential_count()),
        );
        let keys = settings.encryption.keyring.clone();
        let stores = Stores::open(&settings.store, keys, &metrics).await?;
        let tls = crate::tls::tls_config(settings.upstream.ca_file.as_deref())
            .context("upstream TLS configuration")?;
        let listener = bind(settings.server.listen)
            .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
        let addr = listener.local_addr()?;
        let https = crate::server_tls::for_listener(&settings.server, &metrics)?;
        let (tls_files, server_tls) = https.unzip();

        // The server's one upstream pool: built here, handed to every actor and the gateway,
        // and shown by the metrics.
        let pool = UpstreamPool::new(
            settings.upstream.max_concurrent,
            settings.upstream.max_per_second,
        );
        metrics.watch_upstream_pool(pool.clone());
        let deps = ActorDeps {
            refresh: settings.refresh.clone(),
            upstream: settings.upstream.clone(),
            tls,
            pool,
            store: stores.tokens.clone(),
            metrics: metrics.clone(),
            wait_limit: options.wait_limit,
            poll_interval: stores.poll_interval,
            clock: crate::token::SharedClock::system(),
            cohort: 1,
            tokens: crate::token::index::TokenIndex::new(),
        };
        let state = start_services(&settings, &options, deps, stores, tls_files).await?;
        show_running_credentials(&state);
        if options.handle_signals {
            reload_on_sighup(state.reloader.clone(), state.audit.clone())?;
        }
        let server = serve(
            &settings,
            &options,
            listener,
            server_tls,
            nofile,
            state.clone(),
        )?;
        tracing::info!(%addr, tls = settings.server.tls.is_some(), apps = settings.apps.len(),
            clients = settings.clients.len(), "wxtoken listening");
        Ok(Application {
            addr,
            server,
            state,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The HTTP layer's state: running apps, metrics.
    pub fn state(&self) -> web::Data<ServerState> {
        self.state.clone()
    }

    /// Stops the server gracefully when asked.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until the server is stopped (signal or handle).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let stopped = self.server.await;
        // The minute's reads so far: a restart must not leave a gap in the trail.
        self.state.audit.flush_reads();
        stopped
    }
}

/// The stores of one server: token records, and the Open Platform's durable records, in the
/// same place.
struct Stores {
    tokens: Arc<dyn TokenStore>,
    platforms: Arc<dyn PlatformStore>,
    /// The message hub's pushes and deliveries.
    messages: Arc<dyn MessageStore>,
    /// How often an actor re-reads a shared record it was not told about.
    poll_interval: Duration,
}

impl Stores {
    /// Opens the configured store with the keys that seal what it writes and open what it
    /// reads.
    async fn open(
        settings: &StoreSettings,
        keys: Arc<Keyring>,
        metrics: &Metrics,
    ) -> anyhow::Result<Stores> {
        Ok(match settings {
            StoreSettings::Embedded { path } => {
                let s = Arc::new(EmbeddedStore::open_with_keys(path, metrics.clone(), keys)?);
                Stores {
                    tokens: s.clone(),
                    platforms: s.clone(),
                    messages: s,
                    poll_interval: Duration::from_secs(3600),
                }
            }
            StoreSettings::Redis(redis) => {
                let s = Arc::new(RedisStore::open_with_keys(redis, metrics.clone(), keys).await?);
                Stores {
                    tokens: s.clone(),
                    platforms: s.clone(),
                    messages: s,
                    poll_interval: redis.poll_interval,
                }
            }
        })
    }
}

/// Starts the apps' and platforms' actors and the reloader, and builds the state every worker
/// shares from them, complete: nothing in it is set later.
async fn start_services(
    settings: &Settings,
    options: &Options,
    deps: ActorDeps,
    stores: Stores,
    tls_files: Option<Arc<crate::server_tls::TlsFiles>>,
) -> anyhow::Result<web::Data<ServerState>> {
    let apps = Arc::new(ArcSwap::from_pointee(
        Apps::start(&settings.apps, &deps).await,
    ));
    let clients = Arc::new(ArcSwap::from_pointee(ClientKeys::new(
        settings.clients.clone(),
        settings.server.client_auth,
        &deps.metrics,
    )));
    // Before the platforms, which hand their events to it.
    let hub = start_hub(settings, options, &deps, &stores);
    let mut platforms = HashMap::new();
    for p in &settings.platforms {
        // Records that do not open stop the start, before anything could take them as absent.
        crate::store::sealed::check_platform_records(&*stores.platforms, &p.name).await?;
        let shared = Platform::start(p, &deps, stores.platforms.clone(), hub.clone()).await?;
        shared.spawn_background();
        platforms.insert(p.name.clone(), shared);
    }
    let mut wecom_suites = HashMap::new();
    for s in &settings.wecom_suites {
        let suite = crate::wecom::Suite::start(s, &deps, stores.platforms.clone()).await?;
        suite.spawn_background();
        wecom_suites.insert(s.name.clone(), suite);
    }
    let wecom_providers = settings
        .wecom_providers
        .iter()
        .map(|p| (p.name.clone(), crate::wecom::Provider::start(p, &deps)))
        .collect();
    let known_refresh_tokens = Arc::new(crate::proxy::PlatformRefreshTokens(
        platforms.values().cloned().collect(),
    ));
    let gateway = crate::proxy::Gateway::new(
        settings.proxy.clone(),
        settings.upstream.clone(),
        deps.tls.clone(),
        deps.pool.clone(),
        deps.metrics.clone(),
        options.wait_limit,
        known_refresh_tokens,
    );
    let (metrics, tokens) = (deps.metrics.clone(), deps.tokens.clone());
    // On this (the main) arbiter, where reloads start new token actors; it swaps the same
    // cells the handlers read.
    let reloader = Reloader::new(
        options.config_path.clone(),
        settings.clone(),
        deps,
        apps.clone(),
        clients.clone(),
        hub.clone(),
    )
    .reloading_tls_files(tls_files)
    .start();
    // Built once, outside the per-worker factory: every worker shares the same state.
    let audit = match &settings.audit {
        Some(a) => Audit::open(a.clone(), metrics.audit_write_errors()),
        None => Audit::off(),
    };
    audit.spawn_rollup();
    Ok(web::Data::new(ServerState {
        hub,
        rendered: RenderCache::new(settings.credential_count()),
        audit,
        apps,
        clients,
        metrics,
        store: stores.tokens,
        wait_limit: options.wait_limit,
        reloader,
        platforms,
        wecom_suites,
        wecom_providers,
        tokens,
        gateway,
        readiness: settings.server.readiness,
    }))
}

/// The message hub over the configured routes, its workers started on this arbiter (where a
/// reload starts the workers of added routes too), and the push series of every source at 0.
fn start_hub(
    settings: &Settings,
    options: &Options,
    deps: &ActorDeps,
    stores: &Stores,
) -> Arc<crate::messages::Hub> {
    let hub = Arc::new(crate::messages::Hub::new(
        settings.routes.clone(),
        stores.messages.clone(),
        deps.metrics.clone(),
        deps.tls.clone(),
        options.hub,
    ));
    hub.start();
    let sources: Vec<String> = settings
        .apps
        .iter()
        .map(|a| a.name.clone())
        .chain(settings.platforms.iter().map(|p| p.name.clone()))
        .collect();
    deps.metrics.init_messages(&sources, &[]);
    hub
}

/// Scrapes read the apps, platforms and WeCom suites running at that moment. Weak references: the state
/// owns the metrics, so a strong one would keep both alive forever.
fn show_running_credentials(state: &web::Data<ServerState>) {
    let scraped = Arc::downgrade(&state.clone().into_inner());
    state.metrics.read_credentials_from(move || {
        scraped
            .upgrade()
            .map(|s| {
                let mut all = scraped_credentials(&s.apps.load(), &s.platforms);
                all.extend(crate::wecom::scrape::credentials(
                    &s.wecom_suites,
                    &s.wecom_providers,
                ));
                all
            })
            .unwrap_or_default()
    });
    if !state.wecom_suites.is_empty() {
        let scraped = Arc::downgrade(&state.clone().into_inner());
        state.metrics.read_wecom_suites_from(move || {
            scraped
                .upgrade()
                .map(|s| crate::wecom::scrape::suites(&s.wecom_suites))
                .unwrap_or_default()
        });
    }
    if !state.platforms.is_empty() {
        let scraped = Arc::downgrade(&state.clone().into_inner());
        state.metrics.read_platforms_from(move || {
            scraped
                .upgrade()
                .map(|s| scraped_platforms(&s))
                .unwrap_or_default()
        });
    }
}

/// The HTTP server over `state` on `listener` (HTTPS with `tls`), running: workers, the
/// connection cap, the middleware and the routes.
fn serve(
    settings: &Settings,
    options: &Options,
    listener: TcpListener,
    tls: Option<rustls::ServerConfig>,
    nofile: u64,
    state: web::Data<ServerState>,
) -> anyhow::Result<Server> {
    // Set here rather than left to actix-web so the connection cap can be shared among them.
    let workers = options
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .clamp(1, MAX_WORKERS);
    let max_connections = settings
        .server
        .max_connections_per_worker
        .unwrap_or_else(|| fd_limit::derived_max_connections(nofile, workers));
    tracing::info!(
        workers,
        max_connections_per_worker = max_connections,
        "connection cap"
    );
    let body_deadline = BodyDeadline(settings.server.body_timeout);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(body_deadline)
            // Inside `track_requests`, so its 408s and 413s are counted too.
            .wrap(actix_web::middleware::from_fn(read_chunked_bodies))
            .wrap(actix_web::middleware::from_fn(track_requests))
            // `//cgi-bin/token` is `/cgi-bin/token`, as WeChat's own front end reads it (an
            // SDK with a base URL ending in `/` sends it): routed as one path, so the facade
            // answers it and nothing forwards it.
            .wrap(actix_web::middleware::NormalizePath::new(
                actix_web::middleware::TrailingSlash::MergeOnly,
            ))
            .configure(routes)
    })
    .workers(workers)
    // When every worker holds this many, the listener stops accepting and new clients wait
    // in the kernel's backlog instead of failing `accept` with EMFILE.
    .max_connections(max_connections)
    // The client certificate of a TLS connection, for `clients`.
    .on_connect(crate::client_cert::on_connect);
    let mut server = match tls {
        Some(config) => server.listen_rustls_0_23(listener, config)?,
        None => server.listen(listener)?,
    }
    .shutdown_timeout(settings.server.shutdown_timeout.as_secs());
    if !options.handle_signals {
        server = server.disable_signals();
    }
    Ok(server.run())
}

/// Every running credential (each app's token and tickets) with its status and quota limit.
fn scraped_credentials(
    apps: &Apps,
    platforms: &HashMap<String, Arc<Platform>>,
) -> Vec<ScrapedCredential> {
    let mut out = Vec::new();
    for p in platforms.values() {
        out.push(ScrapedCredential {
            label: p.label(),
            status: p.component_status().load_full(),
            daily_quota: crate::platform::COMPONENT_DAILY_QUOTA,
            gauges: true,
        });
        out.push(ScrapedCredential {
            label: crate::config::labels::authorizer_label(p.name()),
            status: Arc::default(),
            daily_quota: 0,
            gauges: false,
        });
        for kind in [
            crate::config::TicketKind::Jsapi,
            crate::config::TicketKind::WxCard,
        ] {
            out.push(ScrapedCredential {
                label: crate::config::labels::authorizer_ticket_label(p.name(), kind),
                status: Arc::default(),
                daily_quota: 0,
                gauges: false,
            });
        }
    }
    for app in apps.iter() {
        let daily_quota = app.settings.daily_quota;
        out.push(ScrapedCredential {
            label: app.name.clone(),
            status: app.status.load_full(),
            daily_quota,
            gauges: true,
        });
        for (kind, t) in &app.tickets {
            out.push(ScrapedCredential {
                label: ticket_label(&app.name, *kind),
                status: t.status.load_full(),
                daily_quota,
                gauges: true,
            });
        }
    }
    out
}

/// actix-server refuses more worker threads than this.
const MAX_WORKERS: usize = 512;

/// Raises the soft open-file limit to the hard one and logs both figures; returns the limit now
/// in force (the figure the connection cap is derived from).
fn raise_open_file_limit() -> u64 {
    match fd_limit::raise_nofile() {
        Ok(l) if l.after < l.hard => {
            tracing::warn!(
                before = l.before,
                after = l.after,
                hard = l.hard,
                "open-file limit could not be raised to the hard limit"
            );
            l.after
        }
        Ok(l) => {
            let what = if l.after > l.before {
                "open-file limit raised to the hard limit"
            } else {
                "open-file limit already at the hard limit"
            };
            tracing::info!(before = l.before, after = l.after, hard = l.hard, "{what}");
            l.after
        }
        Err(e) => {
            // Not fatal: the server runs within whatever limit it has; the cap assumes the
            // common default.
            tracing::warn!(error = %e, "cannot read the open-file limit; assuming 1024");
            1024
        }
    }
}

/// SIGHUP re-reads the configuration, as daemons do, and reopens the audit file (logrotate).
fn reload_on_sighup(reloader: Addr<Reloader>, audit: Audit) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    actix_web::rt::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            audit.reopen();
            // The reloader logs the outcome.
            let _ = reloader.send(Reload).await;
        }
    });
    Ok(())
}

/// Binds `addr` with a large backlog (`std::net::TcpListener::bind` uses 128).
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// What a scrape shows of each platform.
fn scraped_platforms(state: &ServerState) -> Vec<crate::metrics::ScrapedPlatform> {
    let now = std::time::SystemTime::now();
    state
        .platforms
        .values()
        .map(|p| {
            let age = p.ticket_age(now).map(|d| d.as_secs_f64());
            crate::metrics::ScrapedPlatform::new(p.name(), age, p.authorizer_counts().by_state())
        })
        .collect()
}
