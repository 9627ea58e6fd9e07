//! Trust: the audit trail (and, beside it, encryption at rest and TLS).

mod audit;
