//! The termination signal.

/// Resolves on SIGTERM (Kubernetes) or SIGINT (Ctrl-C).
pub async fn terminate_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

/// Starts a service's drain, as SIGTERM does. Clones trigger the same drain.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger(tokio::sync::watch::Sender<bool>);

impl ShutdownTrigger {
    /// A trigger that has not fired.
    pub fn new() -> Self {
        Self(tokio::sync::watch::channel(false).0)
    }

    /// Starts the drain.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    /// A receiver that turns `true` when the drain starts.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<bool> {
        self.0.subscribe()
    }
}

impl Default for ShutdownTrigger {
    fn default() -> Self {
        Self::new()
    }
}
