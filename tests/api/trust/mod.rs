//! Trust at rest: what the stores hold is sealed (see docs/security.md).

mod at_rest;
