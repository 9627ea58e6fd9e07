//! Integration tests: the server and its fake WeChat over real HTTP on 127.0.0.1.

mod auth;
mod fake_wechat;
mod faults;
mod helpers;
mod invalidate;
mod persistence;
mod refresh;
mod token;
