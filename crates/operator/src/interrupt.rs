//! SIGINT and SIGTERM as a request to stop after the record in hand: a command that writes
//! progress down then reports what it did. A second signal ends the process at once (exit 130
//! for SIGINT, 143 for SIGTERM).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether a stop was requested. The default is never.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// Listens for SIGINT and SIGTERM from now on (a thread of its own, so that neither a
    /// blocking Kafka call nor an idle runtime delays noticing them).
    pub fn on_signals() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let requested = Self::default();
        let flag = Arc::clone(&requested.0);
        let (installed, listening) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => return drop(installed.send(Err(error))),
                };
                runtime.block_on(async move {
                    let signals = signal(SignalKind::interrupt())
                        .and_then(|int| Ok((int, signal(SignalKind::terminate())?)));
                    let (mut int, mut term) = match signals {
                        Ok(signals) => {
                            let _ = installed.send(Ok(()));
                            signals
                        }
                        Err(error) => return drop(installed.send(Err(error))),
                    };
                    loop {
                        // 128 + the signal's number, as a shell reports it.
                        let code = tokio::select! {
                            _ = int.recv() => 130,
                            _ = term.recv() => 143,
                        };
                        if flag.swap(true, Ordering::SeqCst) {
                            std::process::exit(code);
                        }
                        eprintln!(
                            "voicehub: stopping after the record in hand (again to stop at once)"
                        );
                    }
                });
            })?;
        listening
            .recv()
            .map_err(|_| std::io::Error::other("the signal thread ended"))??;
        Ok(requested)
    }

    /// Whether a stop was requested.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
