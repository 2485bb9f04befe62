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
        let meta = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        writer.write_str(UtcText::now_micros().as_str())?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(meta.level().as_str())?;
        writer.write_char('"')?;
        let mut fields = Fields {
            out: &mut writer,
            log_target: None,
            result: Ok(()),
        };
        event.record(&mut fields);
        let Fields {
            log_target, result, ..
        } = fields;
        result?;
        writer.write_str(",\"target\":")?;
        string(&mut writer, log_target.as_deref().unwrap_or(meta.target()))?;
        let span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if let Some(span) = span {
            writer.write_str(",\"span\":{\"name\":")?;
            string(&mut writer, span.name())?;
            let extensions = span.extensions();
            // JsonFields writes a span's fields as an object: its members follow the name.
            let members = extensions
                .get::<FormattedFields<N>>()
                .and_then(|fields| fields.strip_prefix('{')?.strip_suffix('}'))
                .filter(|members| !members.is_empty());
            if let Some(members) = members {
                writer.write_char(',')?;
                writer.write_str(members)?;
            }
            writer.write_char('}')?;
        }
        writer.write_str("}\n")
    }
}

/// Writes an event's fields as `,"name":value` members.
struct Fields<'a, 'w> {
    out: &'a mut Writer<'w>,
    log_target: Option<String>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn member(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        self.result = self
            .out
            .write_char(',')
            .and_then(|()| string(self.out, field.name()))
            .and_then(|()| self.out.write_char(':'))
            .and_then(|()| value(self.out));
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "log.target" {
            self.log_target = Some(value.to_owned());
        }
        self.member(field, |out| string(out, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |out| {
            out.write_char('"')?;
            write!(Escaping(out), "{value:?}")?;
            out.write_char('"')
        });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.member(field, |out| {
            if value.is_finite() {
                // As serde_json writes it: `1.0` stays a float, `1e300` is `1e+300`.
                out.write_str(zmij::Buffer::new().format_finite(value))
            } else {
                out.write_str("null")
            }
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |out| {
            out.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |out| {
            out.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |out| {
            out.write_str(if value { "true" } else { "false" })
        });
    }
}

/// `text` as a JSON string.
fn string(out: &mut impl Write, text: &str) -> fmt::Result {
    out.write_char('"')?;
    escaped(out, text)?;
    out.write_char('"')
}

/// `text` escaped for the inside of a JSON string: the quote, the backslash and control
/// characters; everything else as it is.
fn escaped(out: &mut impl Write, text: &str) -> fmt::Result {
    let mut rest = text;
    while let Some(at) = rest
        .bytes()
        .position(|byte| byte == b'"' || byte == b'\\' || byte < b' ')
    {
        // `at` is an ASCII byte, so both sides are whole characters.
        let (plain, tail) = rest.split_at(at);
        out.write_str(plain)?;
        let mut chars = tail.chars();
        match chars.next() {
            Some('"') => out.write_str("\\\"")?,
            Some('\\') => out.write_str("\\\\")?,
            Some('\n') => out.write_str("\\n")?,
            Some('\r') => out.write_str("\\r")?,
            Some('\t') => out.write_str("\\t")?,
            Some(control) => write!(out, "\\u{:04x}", u32::from(control))?,
            None => {}
        }
        rest = chars.as_str();
    }
    out.write_str(rest)
}

/// Escapes what is formatted through it.
struct Escaping<'a, W>(&'a mut W);

impl<W: Write> Write for Escaping<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        escaped(self.0, text)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn strings_are_escaped_as_json_reads_them() {
        let text = "a\"b\\c\nd\re\tf\u{1}g\u{7f}é";
        let mut out = String::new();
        string(&mut out, text).unwrap();
        let read: String = serde_json::from_str(&out).unwrap();
        assert_eq!(read, text);
        assert_eq!(out, r#""a\"b\\c\nd\re\tf\u0001g"#.to_owned() + "\u{7f}é\"");
    }
}
