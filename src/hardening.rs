//! Process settings made once at start because of the secrets wxtoken holds in memory
//! (AppSecrets, tokens, refresh tokens): no core dumps.

/// Turns core dumps off for this process (`PR_SET_DUMPABLE` 0): a crash then leaves no file
/// with every secret in it, and other processes of the same user cannot attach to it or read
/// its memory through `/proc`. Linux only; elsewhere nothing is done. Returns whether it took
/// effect; a failure is logged, not fatal (the server is as safe as before the call).
pub fn disable_core_dumps() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_DUMPABLE takes one integer argument and touches no memory of ours.
        let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            tracing::warn!(error = %e, "cannot turn core dumps off (prctl PR_SET_DUMPABLE)");
            return false;
        }
        true
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// Whether this process may dump core (`PR_GET_DUMPABLE`); `None` off Linux.
pub fn dumpable() -> Option<bool> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_GET_DUMPABLE takes no argument and returns the flag.
        let rc = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
        (rc >= 0).then_some(rc != 0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn core_dumps_are_turned_off() {
        assert!(super::disable_core_dumps());
        assert_eq!(super::dumpable(), Some(false));
    }
}
