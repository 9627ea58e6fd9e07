//! The C allocator's one setting: large buffers (the request bodies the gateway holds for a
//! moment) go back to the kernel when they are freed, however many came before.
//!
//! glibc's malloc serves an allocation of `M_MMAP_THRESHOLD` bytes or more with a mapping of
//! its own and unmaps it when it is freed. The threshold starts at 128 KiB but is dynamic: each
//! time a mapped chunk is freed, it rises to that chunk's size (up to 32 MiB). So once the first
//! 20 MiB upload had been freed, every later body came from the heap arenas instead, where a
//! freed chunk stays with the process unless it lies at the top of its heap, and where bodies
//! of different sizes fragment the heap. With 8 slots of 20 MiB, `scripts/bench-gateway-memory`
//! measured the idle RSS after four rounds of abandoned uploads at 16, 46, 47 and 79 MiB against
//! a 15 MiB baseline, climbing (at 64 slots it had reached 855 MiB); with the threshold fixed,
//! 15.5 to 15.8 MiB after every round. Setting the threshold turns the dynamic adjustment off
//! (mallopt(3)), and 128 KiB keeps glibc's own starting value: nothing smaller changes (200
//! ordinary forwarded calls made no `mmap`, `munmap` or `brk` at all under `strace`), and a body
//! is always mapped, then unmapped when its call ends.
//!
//! Other allocators (musl, a global Rust allocator) have no such setting and need none here.

/// glibc's initial `M_MMAP_THRESHOLD`. The buffers of an ordinary forwarded call are below it
/// (the answer peek is 16 KiB, upload slices 64 KiB), so they stay in the arenas, which are
/// faster for them; only buffers of upload size are mapped.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Fixes glibc's mmap threshold (see the module documentation). Call it once at start, before
/// threads are spawned; a no-op elsewhere. Returns whether the setting was taken.
pub fn return_large_buffers_to_the_kernel() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets one of malloc's parameters; any value is accepted or
        // refused (0) without touching memory the program holds.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
