//! Turning keys, audit entries and usage into JSON values and text tables.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::SystemTime;

use keystead::{AuditEntry, KeyInfo, KeyStatus};
use serde_json::{json, Map, Value};

use crate::timefmt::format_time;

/// Standard base64 (RFC 4648, with `=` padding), into a buffer wiped on drop.
pub fn base64(bytes: &[u8]) -> keystead::Zeroizing<String> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = keystead::Zeroizing::new(String::with_capacity(bytes.len().div_ceil(3) * 4));
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A time as RFC 3339 UTC, or `null`.
fn time_json(time: Option<SystemTime>) -> Value {
    time.map_or(Value::Null, |t| Value::String(format_time(t)))
}

/// The stable JSON form of a key (never its secret).
pub fn key_json(info: &KeyInfo) -> Value {
    key_json_at(info, SystemTime::now())
}

fn key_json_at(info: &KeyInfo, now: SystemTime) -> Value {
    let metadata: Map<String, Value> = info
        .metadata()
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "id": info.id().to_string(),
        "name": info.name(),
        "status": info.status_at(now).as_str(),
        "scopes": info.scopes(),
        "metadata": metadata,
        "created_at": format_time(info.created_at()),
        "updated_at": format_time(info.updated_at()),
        "expires_at": time_json(info.expires_at()),
        "last_used_at": time_json(info.last_used_at()),
        "use_count": info.use_count(),
        "replaces": info.replaces().map(|id| id.to_string()),
        "replaced_by": info.replaced_by().map(|id| id.to_string()),
    })
}

/// The JSON form of an audit entry.
pub fn audit_json(entry: &AuditEntry) -> Value {
    json!({
        "seq": entry.seq,
        "at": format_time(entry.at),
        "actor": entry.actor,
        "action": entry.action.as_str(),
        "key_id": entry.key_id.to_string(),
        "detail": entry.detail,
    })
}

/// Whether a character is escaped when shown: control characters (C0, C1) and invisible or
/// direction-changing ones (zero-width, bidi controls, ...; see `keystead::is_invisible_char`),
/// which a store written by another program (or an older keystead) may hold in names,
/// metadata, actors and audit details, and which could make one text look like another.
fn needs_escape(c: char) -> bool {
    c.is_control() || keystead::is_invisible_char(c)
}

fn push_escaped(out: &mut String, c: char) {
    if needs_escape(c) {
        // `\n`, `\t`, `\r`, `\0` or `\u{...}`.
        match c {
            '\n' | '\t' | '\r' | '\0' => out.extend(c.escape_debug()),
            _ => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    } else {
        out.push(c);
    }
}

/// Text safe to print to a terminal: control, invisible and direction-changing characters are
/// escaped (`\u{202e}`), and so are backslashes when anything is, so an escape cannot be
/// faked.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else {
            push_escaped(&mut out, c);
        }
    }
    Cow::Owned(out)
}

/// A name in double quotes: quotes and backslashes escaped, and whatever [`printable`] escapes.
pub fn quoted(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            _ => push_escaped(&mut out, c),
        }
    }
    out.push('"');
    out
}

fn or_dash(text: String) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text
    }
}

fn time_or(time: Option<SystemTime>, absent: &str) -> String {
    time.map_or_else(|| absent.to_owned(), format_time)
}

fn scopes_text(info: &KeyInfo) -> String {
    or_dash(info.scopes().join(","))
}

fn metadata_text(info: &KeyInfo) -> String {
    or_dash(
        info.metadata()
            .iter()
            .map(|(k, v)| format!("{k}={}", printable(v)))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            if i + 1 < widths.len() {
                let pad = width.saturating_sub(cell.chars().count());
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// The `list` table: id, name, status, scopes, expires, last used, uses.
pub fn key_table(keys: &[KeyInfo]) -> String {
    let now = SystemTime::now();
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            vec![
                k.id().to_string(),
                printable(k.name()).into_owned(),
                k.status_at(now).to_string(),
                scopes_text(k),
                time_or(k.expires_at(), "never"),
                time_or(k.last_used_at(), "never"),
                k.use_count().to_string(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "STATUS",
            "SCOPES",
            "EXPIRES",
            "LAST USED",
            "USES",
        ],
        &rows,
    )
}

/// The `show` summary: one field per line.
pub fn key_details(info: &KeyInfo) -> String {
    let link = |id: Option<keystead::KeyId>| id.map_or_else(|| "-".to_owned(), |i| i.to_string());
    let status = info.status();
    let mut status_text = status.to_string();
    match (status, info.expires_at()) {
        (KeyStatus::Expired, Some(at)) => {
            let _ = write!(status_text, " (since {})", format_time(at));
        }
        (KeyStatus::Active | KeyStatus::Disabled, Some(at)) if info.replaced_by().is_some() => {
            let _ = write!(
                status_text,
                " (rotated; grace period ends {})",
                format_time(at)
            );
        }
        _ => {}
    }
    let fields = [
        ("id", info.id().to_string()),
        ("name", printable(info.name()).into_owned()),
        ("status", status_text),
        ("scopes", scopes_text(info)),
        ("metadata", metadata_text(info)),
        ("created", format_time(info.created_at())),
        ("updated", format_time(info.updated_at())),
        ("expires", time_or(info.expires_at(), "never")),
        ("last used", time_or(info.last_used_at(), "never")),
        ("uses", info.use_count().to_string()),
        ("replaces", link(info.replaces())),
        ("replaced by", link(info.replaced_by())),
    ];
    let mut out = String::new();
    for (label, value) in fields {
        let _ = writeln!(out, "{:<12} {value}", format!("{label}:"));
    }
    out
}

/// The `audit` table, newest first.
pub fn audit_table(entries: &[AuditEntry]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                format_time(e.at),
                or_dash(printable(e.actor.as_deref().unwrap_or_default()).into_owned()),
                e.action.to_string(),
                e.key_id.to_string(),
                printable(&e.detail).into_owned(),
            ]
        })
        .collect();
    table(&["SEQ", "TIME", "ACTOR", "ACTION", "KEY", "DETAIL"], &rows)
}

/// How many terminal columns a chart fills at most.
pub const CHART_WIDTH: usize = 80;

/// The characters a chart draws with: block elements (eighths of a cell) in a UTF-8
/// terminal, `#` (whole cells) otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Glyphs {
    Unicode,
    Ascii,
}

/// Left partial blocks of 1 to 7 eighths of a cell.
const EIGHTHS: [char; 7] = ['▏', '▎', '▍', '▌', '▋', '▊', '▉'];

/// A horizontal bar chart, one line per `(label, count)`: the label, a bar scaled so that the
/// largest count fills the bar area, and the exact count right-aligned, in at most
/// [`CHART_WIDTH`] columns. A count of zero has no bar; any other count at least the smallest
/// mark (one eighth of a cell, or one `#`), so that it is never drawn as zero. Labels are
/// printed as given (the caller makes them printable); lines have no trailing spaces.
pub fn bar_chart(rows: &[(String, u64)], glyphs: Glyphs) -> String {
    let label_width = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let count_width = rows
        .iter()
        .map(|(_, c)| c.to_string().len())
        .max()
        .unwrap_or(1);
    // label, space, bar, space, count.
    let bar_width = CHART_WIDTH
        .saturating_sub(label_width + count_width + 2)
        .max(10);
    let max = rows.iter().map(|&(_, c)| c).max().unwrap_or(0);
    let per_cell: u128 = match glyphs {
        Glyphs::Unicode => 8,
        Glyphs::Ascii => 1,
    };
    let mut out = String::new();
    for (label, count) in rows {
        let units = if *count == 0 || max == 0 {
            0
        } else {
            // count / max of the bar, rounded to the nearest unit, at least one.
            let all = bar_width as u128 * per_cell;
            let scaled = (u128::from(*count) * all * 2 + u128::from(max)) / (u128::from(max) * 2);
            scaled.max(1)
        };
        let full = (units / per_cell) as usize;
        let part = (units % per_cell) as usize;
        let mut bar = String::new();
        match glyphs {
            Glyphs::Unicode => {
                bar.extend(std::iter::repeat_n('█', full));
                if part > 0 {
                    bar.push(EIGHTHS[part - 1]);
                }
            }
            Glyphs::Ascii => bar.extend(std::iter::repeat_n('#', full)),
        }
        let drawn = full + usize::from(part > 0);
        let _ = writeln!(
            out,
            "{label}{} {bar}{} {count:>count_width$}",
            " ".repeat(label_width - label.chars().count()),
            " ".repeat(bar_width - drawn),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()).as_str(), encoded);
        }
        assert_eq!(base64(&[0xff; 32]).len(), 44);
        assert_eq!(base64(&[0xfb, 0xff]).as_str(), "+/8=");
    }

    #[test]
    fn table_pads_all_but_the_last_column() {
        let text = table(
            &["A", "BB", "C"],
            &[vec!["xxx".into(), "y".into(), "zzzz".into()]],
        );
        assert_eq!(text, "A    BB  C\nxxx  y   zzzz\n");
    }

    #[test]
    fn bar_chart_scales_to_the_largest_count_and_fits_80_columns() {
        let rows = vec![
            ("a".to_owned(), 0),
            ("bb".to_owned(), 1),
            ("c".to_owned(), 3),
            ("d".to_owned(), 6),
            ("e".to_owned(), 10_000),
        ];
        let text = bar_chart(&rows, Glyphs::Ascii);
        let lines: Vec<&str> = text.lines().collect();
        // 2 (label) + 1 + 70 (bar) + 1 + 5 (count) = 79... the bar fills the rest: 71.
        assert_eq!(lines[4], format!("e  {} 10000", "#".repeat(71)));
        assert_eq!(lines[0], format!("a  {}     0", " ".repeat(71)));
        // 1 of 10000 is less than half a cell: still one mark, never drawn as zero.
        assert_eq!(lines[1], format!("bb #{}     1", " ".repeat(70)));
        for line in &lines {
            assert_eq!(line.chars().count(), CHART_WIDTH, "{line:?}");
        }
        let text = bar_chart(
            &[("x".into(), 8), ("y".into(), 1), ("z".into(), 3)],
            Glyphs::Unicode,
        );
        let lines: Vec<&str> = text.lines().collect();
        // 76 cells; 1/8 of them is 9.5 cells = 76 eighths: 9 full and a half block.
        assert_eq!(lines[0], format!("x {} 8", "█".repeat(76)));
        assert_eq!(
            lines[1],
            format!("y {}▌{} 1", "█".repeat(9), " ".repeat(66))
        );
        // 3/8 of 76 cells is 28.5 cells.
        assert_eq!(
            lines[2],
            format!("z {}▌{} 3", "█".repeat(28), " ".repeat(47))
        );
        for line in &lines {
            assert_eq!(line.chars().count(), CHART_WIDTH, "{line:?}");
        }
        // Counts as large as u64 holds, and all zero.
        let big = bar_chart(
            &[("m".into(), u64::MAX), ("n".into(), u64::MAX / 2)],
            Glyphs::Ascii,
        );
        assert!(
            big.lines().all(|l| l.chars().count() <= CHART_WIDTH),
            "{big}"
        );
        let zeros = bar_chart(&[("m".into(), 0)], Glyphs::Unicode);
        assert!(!zeros.contains('█') && zeros.ends_with(" 0\n"), "{zeros:?}");
        assert_eq!(bar_chart(&[], Glyphs::Ascii), "");
    }

    #[test]
    fn printable_escapes_control_characters() {
        assert_eq!(printable("plain"), "plain");
        assert_eq!(printable("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(printable("back\\slash"), "back\\slash");
    }

    #[test]
    fn invisible_and_bidi_characters_are_escaped() {
        assert_eq!(printable("ad\u{202E}nimda"), "ad\\u{202e}nimda");
        assert_eq!(printable("a\u{200B}b\\"), "a\\u{200b}b\\\\");
        assert_eq!(printable("café ✓"), "café ✓");
        assert_eq!(quoted("x\u{200E}\"y"), "\"x\\u{200e}\\\"y\"");
        assert_eq!(quoted("e\u{FE0F}"), "\"e\\u{fe0f}\"");
    }
}
