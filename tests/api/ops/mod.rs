//! Running wxtoken: metrics, Prometheus, ops files, admin, readiness, the process, the docs.

pub mod admin;
pub mod demo;
pub mod docs_layout;
pub mod docs_links;
pub mod metrics;
pub mod metrics_mode;
pub mod metrics_scale;
pub mod openapi;
pub mod ops_files;
pub mod orchestration;
pub mod process;
pub mod prometheus;
pub mod promtool;
pub mod readyz_scale;
pub mod scrape;
