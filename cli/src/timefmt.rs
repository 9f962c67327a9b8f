//! RFC 3339 timestamps: always printed in UTC with whole seconds (`2026-01-31T12:00:00Z`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 9999-12-31T23:59:59Z, the last time a four-digit RFC 3339 year can show.
pub const LATEST_SECS: u64 = 253_402_300_799;

/// The latest time accepted for an expiry.
pub fn latest() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(LATEST_SECS)
}

/// Formats a time as RFC 3339 UTC with whole seconds (fractions are dropped, rounding down).
///
/// Never panics: years outside 0000..=9999 (which keystead never writes, but a store is a file
/// anyone could have filled) are shown with an explicit sign, ISO 8601 expanded style.
pub fn format_time(time: SystemTime) -> String {
    let secs: i64 = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => {
            let d = before.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            // Round towards the past, as for times after the epoch.
            -whole - i64::from(d.subsec_nanos() > 0)
        }
    };
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (h, m, s) = (of_day / 3600, of_day / 60 % 60, of_day % 60);
    if (0..=9999).contains(&year) {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
    } else {
        format!("{year:+05}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
    }
}

/// The date part only, `2026-01-31`.
pub fn format_date(time: SystemTime) -> String {
    let mut text = format_time(time);
    if let Some(t) = text.find('T') {
        text.truncate(t);
    }
    text
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); H. Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Parses an RFC 3339 time: `2026-01-31T12:00:00Z`, with optional fractional seconds, a `Z`
/// or a `+HH:MM`/`-HH:MM` offset (no offset means UTC), a space instead of `T`, or a bare
/// date `2026-01-31` (midnight UTC). Years 1970 to 9999.
pub fn parse_time(text: &str) -> Result<SystemTime, String> {
    let full;
    let candidate = if text.len() == 10 {
        full = format!("{text}T00:00:00Z");
        &full
    } else {
        text
    };
    match parse_full(candidate) {
        Ok(time) => Ok(time),
        Err(Problem::Format) => Err(format!(
            "`{}` is not an RFC 3339 time such as 2026-01-31T12:00:00Z or 2026-01-31",
            text.escape_debug()
        )),
        Err(Problem::Range) => Err(format!(
            "`{}` is outside the supported range (1970 to 9999)",
            text.escape_debug()
        )),
    }
}

enum Problem {
    Format,
    Range,
}

fn parse_full(text: &str) -> Result<SystemTime, Problem> {
    if !text.is_ascii() {
        return Err(Problem::Format);
    }
    // Split off the zone designator: `Z`, `z`, `+HH:MM`, `-HH:MM` or nothing.
    let (local, offset_secs): (&str, i64) = if let Some(rest) =
        text.strip_suffix('Z').or_else(|| text.strip_suffix('z'))
    {
        (rest, 0)
    } else if text.len() > 6 && matches!(text.as_bytes()[text.len() - 6], b'+' | b'-') {
        let (rest, zone) = text.split_at(text.len() - 6);
        let z = zone.as_bytes();
        let two = |a: u8, b: u8| -> Option<i64> {
            (a.is_ascii_digit() && b.is_ascii_digit())
                .then(|| i64::from((a - b'0') * 10 + b - b'0'))
        };
        let (Some(hours), Some(minutes), b':') = (two(z[1], z[2]), two(z[4], z[5]), z[3]) else {
            return Err(Problem::Format);
        };
        if hours > 23 || minutes > 59 {
            return Err(Problem::Format);
        }
        let sign = if z[0] == b'-' { -1 } else { 1 };
        (rest, sign * (hours * 3600 + minutes * 60))
    } else {
        (text, 0)
    };
    // `YYYY-MM-DDTHH:MM:SS` and optionally `.` and at least one digit; humantime checks the
    // fields but would let trailing text through, so the shape is checked here.
    let shape_ok = local.len() == 19
        || (local.len() > 20
            && local.as_bytes()[19] == b'.'
            && local.as_bytes()[20..].iter().all(u8::is_ascii_digit));
    if !shape_ok {
        return Err(Problem::Format);
    }
    let mut normalized = local.to_owned();
    if normalized.as_bytes()[10] == b't' {
        normalized.replace_range(10..11, "T");
    }
    if normalized[..4].parse::<u16>().is_ok_and(|year| year < 1970) {
        return Err(Problem::Range);
    }
    let utc_as_if = humantime::parse_rfc3339_weak(&normalized).map_err(|_| Problem::Format)?;
    let shift = Duration::from_secs(offset_secs.unsigned_abs());
    let time = if offset_secs >= 0 {
        utc_as_if.checked_sub(shift)
    } else {
        utc_as_if.checked_add(shift)
    };
    match time {
        Some(t) if t >= UNIX_EPOCH && t < latest() + Duration::from_secs(1) => Ok(t),
        _ => Err(Problem::Range),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn formats_like_humantime_in_range() {
        let mut secs: u64 = 0;
        while secs < LATEST_SECS {
            let t = at(secs) + Duration::from_millis(secs % 1000);
            assert_eq!(
                format_time(t),
                humantime::format_rfc3339_seconds(t).to_string(),
                "{secs}"
            );
            secs = secs * 3 + 12_345;
        }
        assert_eq!(format_time(at(LATEST_SECS)), "9999-12-31T23:59:59Z");
        assert_eq!(format_time(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(at(951_782_400)), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn formats_out_of_range_without_panicking() {
        assert_eq!(format_time(at(LATEST_SECS + 1)), "+10000-01-01T00:00:00Z");
        assert_eq!(
            format_time(UNIX_EPOCH - Duration::from_millis(1)),
            "1969-12-31T23:59:59Z"
        );
        assert_eq!(
            format_time(UNIX_EPOCH - Duration::from_secs(62_167_219_201)),
            "-0001-12-31T23:59:59Z"
        );
        // The extremes do not overflow.
        let _ = format_time(UNIX_EPOCH + Duration::from_secs(i64::MAX as u64));
        let _ = format_time(UNIX_EPOCH + Duration::from_secs(u64::MAX / 2));
        assert_eq!(format_date(at(86_400 * 365)), "1971-01-01");
    }

    #[test]
    fn parses_the_accepted_forms() {
        let noon = at(1_769_860_800); // 2026-01-31T12:00:00Z
        assert_eq!(format_time(noon), "2026-01-31T12:00:00Z");
        for text in [
            "2026-01-31T12:00:00Z",
            "2026-01-31T12:00:00z",
            "2026-01-31t12:00:00Z",
            "2026-01-31 12:00:00Z",
            "2026-01-31T12:00:00",
            "2026-01-31T12:00:00+00:00",
            "2026-01-31T14:00:00+02:00",
            "2026-01-31T07:30:00-04:30",
        ] {
            assert_eq!(parse_time(text), Ok(noon), "{text}");
        }
        assert_eq!(
            parse_time("2026-01-31T12:00:00.250Z"),
            Ok(noon + Duration::from_millis(250))
        );
        assert_eq!(parse_time("2026-01-31"), Ok(at(1_769_817_600)));
        assert_eq!(parse_time("9999-12-31T23:59:59Z"), Ok(at(LATEST_SECS)));
    }

    #[test]
    fn rejects_everything_else() {
        for text in [
            "",
            "tomorrow",
            "2026-01-31T12:00:00Zjunk",
            "2026-01-31T12:00:00.Z",
            "2026-01-31T12:00:00.5x",
            "2026-01-31T12:00",
            "2026-02-30T12:00:00Z",
            "2026-13-01",
            "2026-01-31T24:00:00Z",
            "2026-01-31T12:00:00+2:00",
            "2026-01-31T12:00:00+24:00",
            "2026-01-31T12:00:00+02-00",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:00:00+00:01",
            "9999-12-31T23:59:59-01:00",
            "2026-01-31T12:00:00é",
            "20260131",
            "2026/01/31",
        ] {
            let err = parse_time(text).unwrap_err();
            assert!(err.contains('`'), "{text}: {err}");
        }
    }
}
