//! Any bytes as an analysis API response: parse, and re-serialise what was accepted (the
//! enricher embeds it in the enriched record). Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voicehub_model::analysis::AnalysisResult;

fuzz_target!(|body: &[u8]| {
    if let Ok(analysis) = AnalysisResult::parse(body) {
        let value = serde_json::to_value(&analysis).expect("an accepted analysis serialises");
        assert!(value.is_object());
    }
});
