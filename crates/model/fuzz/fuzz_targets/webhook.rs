//! Any bytes as a webhook body: parse, normalise into the CloudEvents record, and check what
//! the ingress relies on (never a panic; an accepted event makes a keyed JSON record whose
//! normalised form parses again to the same thing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use voicehub_model::parse_webhook;
use voicehub_model::record::Provenance;
use voicehub_model::timestamp::Timestamp;

fuzz_target!(|body: &[u8]| {
    let Ok(event) = parse_webhook(body) else {
        return;
    };
    let provenance = Provenance {
        source: "default",
        received_at: Timestamp::parse("2026-11-26T10:00:00Z").expect("valid timestamp"),
        bridge_version: "fuzz",
    };
    let record = event.to_record(&provenance);
    assert_eq!(record.key.as_deref(), Some(event.key()));
    let value: serde_json::Value = serde_json::from_slice(&record.value).expect("record is JSON");
    let again = parse_webhook(value.to_string().as_bytes()).expect("normalised form parses");
    assert_eq!(again.to_value(), event.to_value(), "normalisation is idempotent");
});
