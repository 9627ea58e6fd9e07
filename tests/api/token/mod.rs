//! Serving credentials: fetch, refresh, invalidation, stable token, tickets, WeCom, persistence.

pub mod auth;
pub mod facade;
pub mod fake_wechat;
pub mod https;
pub mod invalidate;
pub mod persistence;
pub mod refresh;
pub mod serving;
pub mod stable;
pub mod tickets;
pub mod upstream_pool;
pub mod wecom;
