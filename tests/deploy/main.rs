//! Deployment artifacts, checked with the tools operators run them with: the container image
//! (hadolint, and the image itself unpacked and served from in a chroot), the compose files
//! (the compose specification's schema), the Kubernetes manifests (kustomize,
//! kubernetes-validate, checkov, promtool) and the systemd unit (systemd-analyze).
//!
//! `scripts/test` installs every tool these need and says which.

mod compose;
mod configs;
mod container;
mod kubernetes;
mod systemd;
mod tools;
