//! Client certificates (`[server] tls_client_ca_file`): a certificate whose subject or SAN
//! matches a client authenticates it instead of a key; a wrong subject, an unknown CA or an
//! expired certificate does not; probes without a certificate still answer; `client_auth`
//! decides whether the key, the certificate or both are needed.

use std::path::Path;

use crate::support::helpers::*;
use crate::support::pki::https_app;
use crate::support::pki::{curl, curl_with_cert, Pki};
use wxtoken::config::{CertMatch, ClientAuth, ServerTls};

/// The standard app over HTTPS with client certificates from `pki`: `billing` matched by the
/// subject `billing` (and its key), `ops` by the SAN `ops.shop.internal`; `mode` decides.
async fn mtls_app(
    pki: &Pki,
    server: &crate::support::pki::Pair,
    mode: ClientAuth,
) -> (TestApp, String) {
    let tls = ServerTls {
        cert_file: server.cert.clone(),
        key_file: server.key.clone(),
        client_ca_file: Some(pki.ca_file.clone()),
    };
    let app = TestApp::builder()
        .adjust(move |(s, _)| {
            s.server.tls = Some(tls);
            s.server.client_auth = mode;
            for c in &mut s.clients {
                c.cert = Some(match c.name.as_str() {
                    "billing" => CertMatch {
                        subject: Some("billing".into()),
                        san: None,
                    },
                    _ => CertMatch {
                        subject: None,
                        san: Some("ops.shop.internal".into()),
                    },
                });
            }
        })
        .start()
        .await;
    let base = app.base.replace("http://", "https://");
    (app, base)
}

#[actix_web::test]
async fn a_matching_certificate_authenticates_without_a_key_and_probes_need_none() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "ca");
    let (_app, base) = mtls_app(&pki, &pki.server("server"), ClientAuth::Either).await;
    let ca: &Path = &pki.ca_file;
    let shop = format!("{base}/v1/apps/shop/token");
    let blog = format!("{base}/v1/apps/blog/token");

    // By subject: billing may read shop, not blog.
    let billing = pki.client("billing", "billing", &[], false);
    assert_eq!(curl_with_cert(&shop, ca, &billing, &[]).await.0, 200);
    assert_eq!(curl_with_cert(&blog, ca, &billing, &[]).await.0, 403);
    // By SAN: ops reads every app.
    let ops = pki.client("ops", "someone", &["ops.shop.internal"], false);
    assert_eq!(curl_with_cert(&blog, ca, &ops, &[]).await.0, 200);
    // Signed by the right CA, but naming no client.
    let stranger = pki.client("stranger", "stranger", &["stranger.example"], false);
    assert_eq!(curl_with_cert(&shop, ca, &stranger, &[]).await.0, 401);
    // Under "either" a key alone still works; a key and a certificate of different clients
    // do not.
    let bearer = format!("Authorization: Bearer {BILLING_KEY}");
    assert_eq!(curl(&shop, ca, &["-H", &bearer]).await.0, 200);
    assert_eq!(
        curl_with_cert(&shop, ca, &ops, &["-H", &bearer]).await.0,
        401
    );

    // No certificate: the handshake is accepted, the probes answer, a token route refuses.
    for probe in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            curl(&format!("{base}{probe}"), ca, &[]).await.0,
            200,
            "{probe}"
        );
    }
    assert_eq!(curl(&shop, ca, &[]).await.0, 401);
}

#[actix_web::test]
async fn certificates_of_another_ca_or_expired_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "ca");
    let other = Pki::new(dir.path(), "other");
    let (_app, base) = mtls_app(&pki, &pki.server("server"), ClientAuth::Either).await;
    let shop = format!("{base}/v1/apps/shop/token");
    // Same subject, wrong issuer: refused in the handshake (or, with TLS 1.3, when the server
    // reads the certificate after it): never a 200.
    let forged = other.client("forged", "billing", &[], false);
    let (status, err) = curl_with_cert(&shop, &pki.ca_file, &forged, &[]).await;
    assert!(status == 0 || status == 401, "{status} {err}");
    let expired = pki.client("expired", "billing", &[], true);
    let (status, err) = curl_with_cert(&shop, &pki.ca_file, &expired, &[]).await;
    assert!(status == 0 || status == 401, "{status} {err}");
    // The server is unharmed.
    let good = pki.client("good", "billing", &[], false);
    assert_eq!(curl_with_cert(&shop, &pki.ca_file, &good, &[]).await.0, 200);
}

#[actix_web::test]
async fn client_auth_cert_ignores_keys_and_both_needs_both() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "ca");
    let server = pki.server("server");
    let billing = pki.client("billing", "billing", &[], false);
    let bearer = format!("Authorization: Bearer {BILLING_KEY}");
    let ca: &Path = &pki.ca_file;

    let (_cert_app, base) = mtls_app(&pki, &server, ClientAuth::Cert).await;
    let shop = format!("{base}/v1/apps/shop/token");
    assert_eq!(curl(&shop, ca, &["-H", &bearer]).await.0, 401);
    assert_eq!(curl_with_cert(&shop, ca, &billing, &[]).await.0, 200);
    // The facade takes the certificate too: its `secret` is then not checked.
    let facade = format!(
        "{base}/cgi-bin/token?grant_type=client_credential&appid={SHOP_APPID}&secret=anything"
    );
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sS", "--cacert"])
        .arg(ca)
        .arg("--cert")
        .arg(&billing.cert)
        .arg("--key")
        .arg(&billing.key)
        .arg(&facade);
    let out = crate::support::pki::run(cmd).await;
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(body["access_token"].is_string(), "{body}");

    let (_both_app, base) = mtls_app(&pki, &server, ClientAuth::Both).await;
    let shop = format!("{base}/v1/apps/shop/token");
    assert_eq!(curl(&shop, ca, &["-H", &bearer]).await.0, 401);
    assert_eq!(curl_with_cert(&shop, ca, &billing, &[]).await.0, 401);
    assert_eq!(
        curl_with_cert(&shop, ca, &billing, &["-H", &bearer])
            .await
            .0,
        200
    );
}

#[actix_web::test]
async fn without_client_certificates_a_presented_one_is_not_asked_for() {
    // HTTPS alone: the server asks for no certificate, and keys work as over plain HTTP.
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "ca");
    let (_app, base) = https_app(&pki.server("server"), None).await;
    let billing = pki.client("billing", "billing", &[], false);
    let shop = format!("{base}/v1/apps/shop/token");
    assert_eq!(
        curl_with_cert(&shop, &pki.ca_file, &billing, &[]).await.0,
        401
    );
}
