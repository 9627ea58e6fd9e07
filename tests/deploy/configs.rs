//! Every wxtoken configuration shipped for a deployment loads and validates, with its secret
//! files read from the placeholders that ship beside it, and the orchestrated ones make `/readyz`
//! answer for the instance.

use wxtoken::config::{ReadinessScope, Settings};

use crate::tools::{path, read};

/// (configuration, where it reads secrets, the placeholders' directory in the repository)
const CONFIGS: [(&str, &str, &str); 6] = [
    (
        "deploy/container/wxtoken.toml",
        "/run/secrets/",
        "deploy/compose/secrets/",
    ),
    (
        "deploy/compose/wxtoken.toml",
        "/run/secrets/",
        "deploy/compose/secrets/",
    ),
    (
        "deploy/compose/wxtoken-fleet.toml",
        "/run/secrets/",
        "deploy/compose/secrets/",
    ),
    (
        "deploy/kubernetes/overlays/single/wxtoken.toml",
        "/run/secrets/wxtoken/",
        "deploy/kubernetes/overlays/single/secrets/",
    ),
    (
        "deploy/kubernetes/overlays/fleet/wxtoken.toml",
        "/run/secrets/wxtoken/",
        "deploy/kubernetes/overlays/fleet/secrets/",
    ),
    (
        "deploy/systemd/wxtoken.toml",
        "/run/credentials/wxtoken.service/",
        "deploy/compose/secrets/",
    ),
];

#[test]
fn every_shipped_configuration_validates_with_its_placeholder_secrets() {
    for (file, mounted_at, placeholders) in CONFIGS {
        let text = read(file);
        assert!(
            text.contains(mounted_at),
            "{file} reads its secrets from {mounted_at}"
        );
        let here = format!("{}/", path(placeholders).display());
        let local = text.replace(mounted_at, &here);
        // No environment: every secret must come from a file.
        let settings =
            Settings::from_toml(&local, &[], &|_| None).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(settings.server.listen.port(), 8080, "{file}");
        assert!(
            settings.server.listen.ip().is_unspecified(),
            "{file}: reachable"
        );
        if !file.starts_with("deploy/systemd/") {
            assert_eq!(
                settings.server.readiness,
                ReadinessScope::Instance,
                "{file}"
            );
        }
    }
}
