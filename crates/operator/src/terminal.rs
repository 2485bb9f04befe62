//! What the CLI writes where a person reads it: dead letters and spool records are webhook
//! bodies, so anything taken from them (a field path, a topic, an error's detail) may hold
//! terminal control sequences. They are shown escaped, never interpreted.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` could change what a terminal shows: C0 and C1 controls, DEL, and the Unicode
/// bidirectional overrides and isolates (text that reads differently than it is).
fn is_hostile(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` for a terminal line: each hostile character written as `\u{..}`.
pub fn printable(text: &str) -> Cow<'_, str> {
    escaped(text, |out, c| {
        let _ = write!(out, "\\u{{{c:x}}}");
    })
}

/// A JSON document for a terminal: serde_json escapes C0 controls but writes DEL, C1 controls
/// and bidi characters as they are; those are escaped here (`\u009b`: still the same JSON).
/// Outside strings JSON has no such characters, so each is inside one, where `\uXXXX` is the
/// same character to any parser.
pub fn json_line(json: &str) -> Cow<'_, str> {
    escaped(json, |out, c| {
        let _ = write!(out, "\\u{c:04x}");
    })
}

/// `text` with each hostile character written by `escape` (borrowed when there is none).
fn escaped(text: &str, escape: impl Fn(&mut String, u32)) -> Cow<'_, str> {
    if !text.chars().any(is_hostile) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_hostile(c) {
            escape(&mut shown, u32::from(c));
        } else {
            shown.push(c);
        }
    }
    Cow::Owned(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "a\u{1b}[31mred\u{7}\u{7f}\u{9b}2J\u{202e}cba\u{2066}z\n";

    #[test]
    fn control_sequences_are_shown_escaped_and_plain_text_untouched() {
        assert!(matches!(printable("plain, ünïcode ✓"), Cow::Borrowed(_)));
        let shown = printable(HOSTILE);
        assert_eq!(
            shown,
            "a\\u{1b}[31mred\\u{7}\\u{7f}\\u{9b}2J\\u{202e}cba\\u{2066}z\\u{a}"
        );
        assert!(!shown.chars().any(is_hostile));
    }

    #[test]
    fn json_stays_the_same_document_without_a_hostile_character() {
        let value = serde_json::json!({ "value": HOSTILE, "ok": "plain" });
        let raw = serde_json::to_string(&value).unwrap();
        assert!(
            raw.chars().any(is_hostile),
            "serde_json leaves C1 and bidi as they are"
        );
        let line = json_line(&raw);
        assert!(!line.chars().any(is_hostile), "{line}");
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back, value);
    }
}
