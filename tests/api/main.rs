//! Integration tests: the server and its fake WeChat over real HTTP on 127.0.0.1.

mod admin;
mod auth;
mod config_hostile;
mod facade;
mod fake_wechat;
mod faults;
mod ha;
mod helpers;
mod hostile_upstream;
mod https;
mod invalidate;
mod metrics;
mod metrics_scale;
mod ops;
mod persistence;
mod process;
mod prometheus;
mod promtool;
mod refresh;
mod scrape;
mod stable;
mod tickets;
mod token;
mod wecom;
