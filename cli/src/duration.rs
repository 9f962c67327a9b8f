//! Durations on the command line: a positive whole number and one unit, e.g. `90d`, `24h`,
//! `15m`, `30s`.

use std::time::Duration;

/// Parses `<number><unit>` with unit `s`, `m`, `h` or `d`. Zero, a missing or unknown unit,
/// signs, spaces, fractions and values that overflow are rejected.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const HINT: &str = "use a whole number and a unit: s, m, h or d (e.g. 90d, 24h, 15m, 30s)";
    if text.is_empty() {
        return Err(format!("a duration must not be empty; {HINT}"));
    }
    let digits_end = text
        .char_indices()
        .find(|(_, c)| !c.is_ascii_digit())
        .map_or(text.len(), |(i, _)| i);
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!("`{}` has no number; {HINT}", text.escape_debug()));
    }
    let seconds_per_unit: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "" => return Err(format!("`{}` has no unit; {HINT}", text.escape_debug())),
        other => {
            return Err(format!(
                "unknown unit `{}` in `{}`; {HINT}",
                other.escape_debug(),
                text.escape_debug()
            ))
        }
    };
    let too_long = || format!("`{}` is too long a duration", text.escape_debug());
    // Only ASCII digits, so this fails only on overflow.
    let count: u64 = digits.parse().map_err(|_| too_long())?;
    if count == 0 {
        return Err(format!(
            "`{}` is zero; a duration must be greater than zero",
            text.escape_debug()
        ));
    }
    let seconds = count.checked_mul(seconds_per_unit).ok_or_else(too_long)?;
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_each_unit() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(15 * 60)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(24 * 3600)));
        assert_eq!(parse_duration("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("007h"), Ok(Duration::from_secs(7 * 3600)));
    }

    #[test]
    fn rejects_zero_empty_and_missing_parts() {
        for bad in [
            "", "0s", "0d", "000h", "d", "h", "90", "  ", " 1d", "1d ", "1 d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_duration("0d").unwrap_err().contains("zero"));
        assert!(parse_duration("").unwrap_err().contains("empty"));
        assert!(parse_duration("90").unwrap_err().contains("no unit"));
    }

    #[test]
    fn rejects_unknown_units_and_other_syntax() {
        for bad in [
            "1w", "1y", "1ms", "1D", "1H", "1hour", "1.5h", "-1d", "+1d", "1h30m", "1e3s", "١d",
            "½h", "1dd",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(!err.is_empty(), "{bad:?}");
        }
        assert!(parse_duration("1w")
            .unwrap_err()
            .contains("unknown unit `w`"));
    }

    #[test]
    fn rejects_overflow() {
        assert!(parse_duration("18446744073709551616s")
            .unwrap_err()
            .contains("too long"));
        assert!(parse_duration("18446744073709551615d")
            .unwrap_err()
            .contains("too long"));
        assert_eq!(
            parse_duration("18446744073709551615s"),
            Ok(Duration::from_secs(u64::MAX))
        );
        assert!(parse_duration("99999999999999999999999999999d").is_err());
    }
}
