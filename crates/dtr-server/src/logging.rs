//! Log output that no logged value can forge.
//!
//! Many logged values come from clients: the `iss` of an assertion not
//! yet verified, client ids, URLs. Written raw, a newline in one starts a
//! fake log line and an ESC byte drives the terminal of whoever reads
//! the log. Instead of escaping at every call site (and missing one),
//! each log format escapes in one place:
//! - text: [`EscapedFields`] formats every field value, span field and
//!   message with its control characters escaped the way Rust escapes
//!   them (`\n`, `\u{1b}`);
//! - JSON: serde_json escapes C0 controls already; [`JsonSafe`] escapes
//!   what it leaves raw (DEL, C1) as `\u00XX`, which is the same JSON.
//!
//! Escaped are all Unicode control characters (C0, DEL, C1), line and
//! paragraph separators, and the bidirectional formatting characters that
//! can make a line read differently from what it contains. What may be
//! logged at all is the concern of each call site (DTR-36: no codes,
//! tokens or secrets); this module makes what is logged safe to read.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::io;
use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, MakeWriter};

/// Characters that are not printed as themselves in a log.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}'
                | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `s` with every control, separator and bidirectional formatting
/// character escaped (`\n`, `\r`, `\t`, else `\u{..}`); borrowed when
/// there is none.
pub fn escape_control(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Field formatting of the text format: like tracing-subscriber's
/// default (`message` first, then `name=value`, strings quoted), with
/// control characters escaped in every value.
#[derive(Debug, Default, Clone, Copy)]
pub struct EscapedFields;

impl<'w> FormatFields<'w> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = EscapingVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

struct EscapingVisitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl EscapingVisitor<'_> {
    fn write(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        let name = field.name();
        // Fields of the `log` crate bridge, shown elsewhere by the formatter.
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let raw = value.to_string();
        let value = escape_control(&raw);
        let sep = if self.first { "" } else { " " };
        self.first = false;
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.result = if name == "message" {
            write!(self.writer, "{sep}{value}")
        } else if self.writer.has_ansi_escapes() {
            write!(
                self.writer,
                "{sep}\x1b[3m{name}\x1b[23m\x1b[2m=\x1b[22m{value}"
            )
        } else {
            write!(self.writer, "{sep}{name}={value}")
        };
    }
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.write(field, format_args!("{value}"));
        } else {
            self.write(field, format_args!("{value:?}"));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.write(field, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, format_args!("{value:?}"));
    }
}

/// A writer of JSON log lines that escapes what serde_json leaves raw
/// (DEL, C1, separators, bidirectional formatting) as `\uXXXX`. Those
/// only occur inside JSON strings, where the escape means the same.
#[derive(Debug, Clone)]
pub struct JsonSafe<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for JsonSafe<M> {
    type Writer = JsonSafeWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        JsonSafeWriter(self.0.make_writer())
    }
}

/// The writer of [`JsonSafe`].
#[derive(Debug)]
pub struct JsonSafeWriter<W>(W);

impl<W: io::Write> io::Write for JsonSafeWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // The formatter writes each event whole; a buffer that is not
        // UTF-8 (cut mid-character) cannot hold a character to escape
        // that serde_json would have produced, so it passes unchanged.
        let Ok(s) = std::str::from_utf8(buf) else {
            return self.0.write(buf);
        };
        // C0 controls are escaped by serde_json; the one raw is the
        // newline ending the line.
        let needs = |c: char| is_unsafe(c) && (c as u32) >= 0x20;
        if !s.chars().any(needs) {
            return self.0.write(buf);
        }
        let mut out = String::with_capacity(s.len() + 16);
        for c in s.chars() {
            if needs(c) {
                let _ = write!(out, "\\u{:04x}", c as u32);
            } else {
                out.push(c);
            }
        }
        self.0.write_all(out.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Human-readable lines; `ansi` colours them (for a terminal).
    Text {
        /// Whether to colour.
        ansi: bool,
    },
    /// One JSON object per line with the fields of the enclosing spans.
    Json,
}

/// The subscriber of a log format writing to `writer`, events filtered
/// by `filter`. The `dtr` binary and tests use this, so what is tested
/// is what runs.
pub fn subscriber<W>(
    format: Format,
    filter: tracing_subscriber::EnvFilter,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        Format::Text { ansi } => Box::new(
            builder
                .fmt_fields(EscapedFields)
                .with_ansi(ansi)
                .with_writer(writer)
                .finish(),
        ),
        Format::Json => Box::new(
            builder
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .with_writer(JsonSafe(writer))
                .finish(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert!(matches!(escape_control("plain text é"), Cow::Borrowed(_)));
        for (raw, escaped) in [
            ("a\nb", "a\\nb"),
            ("a\r\nb", "a\\r\\nb"),
            ("\x1b[31mred", "\\u{1b}[31mred"),
            ("tab\there", "tab\\there"),
            ("nul\0", "nul\\u{0}"),
            ("del\x7f", "del\\u{7f}"),
            ("csi\u{9b}31m", "csi\\u{9b}31m"),
            ("nel\u{85}", "nel\\u{85}"),
            ("ls\u{2028}ps\u{2029}", "ls\\u{2028}ps\\u{2029}"),
            ("rlo\u{202e}", "rlo\\u{202e}"),
        ] {
            assert_eq!(escape_control(raw), escaped, "{raw:?}");
        }
    }

    #[test]
    fn json_writer_escapes_what_serde_json_leaves() {
        use std::io::Write;
        let mut w = JsonSafeWriter(Vec::new());
        let line = format!("{}\n", serde_json::json!({"v": "a\u{9b}b\u{7f}c\n\u{1b}"}));
        w.write_all(line.as_bytes()).unwrap();
        let out = String::from_utf8(w.0).unwrap();
        assert_eq!(out, "{\"v\":\"a\\u009bb\\u007fc\\n\\u001b\"}\n");
        let back: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(back["v"], "a\u{9b}b\u{7f}c\n\u{1b}");
    }
}
