//! The services' memory allocator: jemalloc (each service binary declares it as its global
//! allocator), with its background thread on so that memory freed after a burst goes back to
//! the OS within seconds even when the process then sits idle. Without the thread jemalloc
//! returns memory only when it allocates again, and glibc's malloc keeps most of it for good:
//! idle RSS a minute after a burst of large webhooks was 18 MB here against 128 MB (jemalloc
//! alone) and 32 to 44 MB (glibc), from a 12 to 14 MB baseline (docs/benchmarks.md).

use tracing::{info, warn};

/// Starts jemalloc's background purging thread. A failure (jemalloc not the allocator, or
/// built without thread support) is logged and otherwise harmless: memory is still bounded,
/// only returned later.
pub fn return_freed_memory() {
    match tikv_jemalloc_ctl::background_thread::write(true) {
        Ok(()) => info!("jemalloc returns freed memory to the OS in the background"),
        Err(error) => warn!(
            error = %error,
            "jemalloc's background thread could not start; freed memory returns to the OS \
             only as the service allocates again"
        ),
    }
}
