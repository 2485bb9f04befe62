//! The JSON log line: one object per line, written straight into the line buffer.
//!
//! The shape of `tracing-subscriber`'s flattened JSON format (`timestamp` with microseconds,
//! `level`, the event's fields, `target`, and `span` when inside one), at a fraction of its
//! cost: that format serialises every field through `serde_json` over an adapter that
//! re-checks UTF-8 on each write, and formats the time through `fmt`. The ingress writes a
//! line per webhook, where it cost a tenth of the request's instructions.
//!
//! Events from the `log` crate (librdkafka's, through rdkafka) carry their origin in `log.*`
//! fields: `log.target` becomes the line's `target`, the others are left out.

use std::cell::Cell;
use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use voicehub_model::UtcText;

/// The event format (pair it with `JsonFields`, so that span fields are JSON too).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct JsonLines;

thread_local! {
    /// The line being built, kept between events for its capacity. Taken out while in use, so
    /// an event logged while formatting another (a `Debug` that logs) builds in a new one.
    static LINE: Cell<String> = const { Cell::new(String::new()) };
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Built in a plain `String`, where each piece is an inlined copy, then handed to the
        // writer once (each write to `Writer` is a dynamic call).
        // (A thread whose locals are being torn down builds in a new one.)
        let mut line = LINE.try_with(Cell::take).unwrap_or_default();
        line.clear();
        let built = line_of(ctx, event, &mut line);
        let written = built.and_then(|()| writer.write_str(&line));
        let _ = LINE.try_with(|kept| kept.set(line));
        written
    }
}

fn line_of<S, N>(ctx: &FmtContext<'_, S, N>, event: &Event<'_>, line: &mut String) -> fmt::Result
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    let meta = event.metadata();
    line.push_str("{\"timestamp\":\"");
    line.push_str(UtcText::now_micros().as_str());
    line.push_str("\",\"level\":\"");
    line.push_str(meta.level().as_str());
    line.push('"');
    let mut fields = Fields {
        out: line,
        log_target: None,
        result: Ok(()),
    };
    event.record(&mut fields);
    let Fields {
        log_target, result, ..
    } = fields;
    result?;
    line.push_str(",\"target\":");
    string(line, log_target.as_deref().unwrap_or(meta.target()));
    let span = event
        .parent()
        .and_then(|id| ctx.span(id))
        .or_else(|| ctx.lookup_current());
    if let Some(span) = span {
        line.push_str(",\"span\":{\"name\":");
        string(line, span.name());
        let extensions = span.extensions();
        // JsonFields writes a span's fields as an object: its members follow the name.
        let members = extensions
            .get::<FormattedFields<N>>()
            .and_then(|fields| fields.strip_prefix('{')?.strip_suffix('}'))
            .filter(|members| !members.is_empty());
        if let Some(members) = members {
            line.push(',');
            line.push_str(members);
        }
        line.push('}');
    }
    line.push_str("}\n");
    Ok(())
}

/// Writes an event's fields as `,"name":value` members.
struct Fields<'a> {
    out: &'a mut String,
    log_target: Option<String>,
    /// A `Debug` value's formatting can fail; the line is then not written.
    result: fmt::Result,
}

impl Fields<'_> {
    /// Writes `,"name":` and returns where the value goes, or `None` for a field left out.
    fn member(&mut self, field: &Field) -> Option<&mut String> {
        if self.result.is_err() || field.name().starts_with("log.") {
            return None;
        }
        self.out.push_str(",\"");
        escaped(self.out, field.name());
        self.out.push_str("\":");
        Some(self.out)
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "log.target" {
            self.log_target = Some(value.to_owned());
        }
        if let Some(out) = self.member(field) {
            string(out, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if let Some(out) = self.member(field) {
            out.push('"');
            let result = write!(Escaping(out), "{value:?}");
            out.push('"');
            self.result = result;
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if let Some(out) = self.member(field) {
            if value.is_finite() {
                // As serde_json writes it: `1.0` stays a float, `1e300` is `1e+300`.
                out.push_str(zmij::Buffer::new().format_finite(value));
            } else {
                out.push_str("null");
            }
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if let Some(out) = self.member(field) {
            out.push_str(itoa::Buffer::new().format(value));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if let Some(out) = self.member(field) {
            out.push_str(itoa::Buffer::new().format(value));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if let Some(out) = self.member(field) {
            out.push_str(if value { "true" } else { "false" });
        }
    }
}

/// `text` as a JSON string.
fn string(out: &mut String, text: &str) {
    out.push('"');
    escaped(out, text);
    out.push('"');
}

/// `text` escaped for the inside of a JSON string: the quote, the backslash and control
/// characters; everything else as it is.
fn escaped(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(at) = first_to_escape(rest.as_bytes()) {
        // `at` is an ASCII byte, so both sides are whole characters.
        let (plain, tail) = rest.split_at(at);
        out.push_str(plain);
        let mut chars = tail.chars();
        match chars.next() {
            Some('"') => out.push_str("\\\""),
            Some('\\') => out.push_str("\\\\"),
            Some('\n') => out.push_str("\\n"),
            Some('\r') => out.push_str("\\r"),
            Some('\t') => out.push_str("\\t"),
            Some(control) => {
                out.push_str("\\u00");
                let code = u32::from(control);
                for nibble in [code >> 4, code & 0xf] {
                    out.push(char::from_digit(nibble, 16).unwrap_or('0'));
                }
            }
            None => {}
        }
        rest = chars.as_str();
    }
    out.push_str(rest);
}

/// Where the first byte that must be escaped is: eight bytes at a time, then byte by byte
/// in the word that holds it (a log line's strings rarely hold one).
fn first_to_escape(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Some byte of `word` is below `n` (n <= 0x80); exact, no false positives.
    let any_below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS;
    let any_equal = |word: u64, byte: u8| any_below(word ^ (ONES * u64::from(byte)), 1);
    let (words, _) = bytes.as_chunks::<8>();
    let clean = words
        .iter()
        .take_while(|word| {
            let word = u64::from_ne_bytes(**word);
            any_below(word, b' ') | any_equal(word, b'"') | any_equal(word, b'\\') == 0
        })
        .count();
    let from = clean * 8;
    bytes[from..]
        .iter()
        .position(|&byte| byte == b'"' || byte == b'\\' || byte < b' ')
        .map(|at| from + at)
}

/// Escapes what is formatted through it.
struct Escaping<'a>(&'a mut String);

impl Write for Escaping<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        escaped(self.0, text);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn strings_are_escaped_as_json_reads_them() {
        let text = "a\"b\\c\nd\re\tf\u{1}g\u{7f}é\u{1f}";
        let mut out = String::new();
        string(&mut out, text);
        let read: String = serde_json::from_str(&out).unwrap();
        assert_eq!(read, text);
        assert_eq!(
            out,
            r#""a\"b\\c\nd\re\tf\u0001g"#.to_owned() + "\u{7f}é\\u001f\""
        );
    }

    #[test]
    fn the_first_byte_to_escape_is_found_at_every_position() {
        for len in 0..20 {
            let plain = "é-".repeat(len / 2) + &"x".repeat(len % 2);
            assert_eq!(first_to_escape(plain.as_bytes()), None, "{plain}");
            for special in ['"', '\\', '\n', '\u{0}', '\u{1f}'] {
                for at in 0..=plain.len() {
                    if !plain.is_char_boundary(at) {
                        continue;
                    }
                    let text = format!("{}{special}{}", &plain[..at], &plain[at..]);
                    assert_eq!(first_to_escape(text.as_bytes()), Some(at), "{text:?}");
                }
            }
        }
        // Bytes just beside the escaped ones are left alone.
        assert_eq!(first_to_escape(b" !#[]^\x7f\x80\xff abcdefgh"), None);
    }
}
