//! VoiceHub, played: the calls ([`calls`]), the webhook sender with VoiceHub's retry rules
//! ([`sender`]) and the analysis API ([`analysis`]). The binary `voicehub-sim` drives them; the
//! end-to-end test uses them as a library.

pub mod analysis;
pub mod calls;
pub mod sender;

pub use analysis::{AnalysisApi, AnalysisTrouble};
pub use calls::{Trouble, call_events};
pub use sender::{Acknowledged, Report, SendOptions, simulate};
