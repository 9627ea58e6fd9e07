//! Integration tests: the server and its fake WeChat over real HTTP on 127.0.0.1.

mod admin;
mod auth;
mod facade;
mod fake_wechat;
mod faults;
mod ha;
mod helpers;
mod hostile_clients;
mod https;
mod invalidate;
mod metrics;
mod ops;
mod persistence;
mod process;
mod prometheus;
mod promtool;
mod refresh;
mod stable;
mod tickets;
mod token;
mod wecom;
