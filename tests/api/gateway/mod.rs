//! The API gateway: pass-through and proxy routes, wire, hardening, Node SDK, business fakes.

pub mod end_to_end;
pub mod fake_business;
pub mod gateway_hardening;
pub mod gateway_wire;
pub mod node_sdk;
