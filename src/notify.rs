//! Tells a service manager where `serve` is: `READY=1` once it serves, `STOPPING=1` when a
//! signal starts the shutdown, over the datagram socket systemd names in `NOTIFY_SOCKET`
//! (`Type=notify` units). Without `NOTIFY_SOCKET` nothing is sent.
//!
//! The `sd-notify` crate rather than our own send: it is small (its one dependency, libc, is
//! already ours), maintained, and handles what is easy to get wrong by hand, such as abstract
//! socket names (`@...`) and the message format. A failed notification is logged, never fatal:
//! the server itself is fine, and systemd reports a unit that never said `READY=1` on its own.

use sd_notify::NotifyState;

/// `READY=1`: the listener is bound and the server accepts requests.
pub fn ready() {
    send(&[NotifyState::Ready], "READY=1");
}

/// `STOPPING=1`: a graceful shutdown has begun.
pub fn stopping() {
    send(&[NotifyState::Stopping], "STOPPING=1");
}

fn send(state: &[NotifyState], what: &str) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    match sd_notify::notify(state) {
        Ok(()) => tracing::debug!(state = what, "notified the service manager"),
        Err(e) => tracing::warn!(state = what, error = %e, "cannot notify the service manager"),
    }
}

/// Sends `STOPPING=1` when SIGTERM or SIGINT arrives. actix-web handles the same signals to
/// stop the server; every listener of a signal is woken, so this runs alongside it. The task
/// ends with the System when the server has stopped.
pub fn stopping_on_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return Ok(());
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    actix_web::rt::spawn(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        stopping();
    });
    Ok(())
}
