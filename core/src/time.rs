//! Timestamps: `SystemTime` in the API, milliseconds since the Unix epoch on disk.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// Milliseconds in a day, the width of a usage bucket (UTC days).
pub(crate) const DAY_MS: i64 = 86_400_000;

/// 9999-12-31T23:59:59Z in milliseconds: the latest time the store accepts. Every binding
/// and RFC 3339 (four-digit years) can show it; later times are refused, not clamped.
pub(crate) const LATEST_MS: i64 = 253_402_300_799_000;

/// `time` in milliseconds, refused with [`Error::InvalidArgument`] if it is after
/// 9999-12-31T23:59:59Z; `what` names the value in the message, e.g. `the expiry`.
pub(crate) fn checked_to_ms(time: SystemTime, what: &str) -> Result<i64> {
    let ms = to_ms(time);
    if ms > LATEST_MS {
        return Err(Error::invalid(format!(
            "{what} is after 9999-12-31T23:59:59Z, the latest time keystead stores"
        )));
    }
    Ok(ms)
}

pub(crate) fn to_ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

pub(crate) fn from_ms(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

pub(crate) fn now_ms() -> i64 {
    to_ms(SystemTime::now())
}

pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The UTC day number (days since 1970-01-01) of a timestamp.
pub(crate) fn day_of(ms: i64) -> u32 {
    u32::try_from(ms.div_euclid(DAY_MS)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_both_sides_of_the_epoch() {
        for ms in [0, 1, -1, 1_700_000_000_123, -86_400_000] {
            assert_eq!(to_ms(from_ms(ms)), ms);
        }
        assert_eq!(day_of(DAY_MS * 3 + 5), 3);
    }

    #[test]
    fn the_latest_time_is_the_last_second_of_9999() {
        let latest = from_ms(LATEST_MS);
        assert_eq!(checked_to_ms(latest, "t").unwrap(), LATEST_MS);
        let later = latest + Duration::from_millis(1);
        assert!(matches!(
            checked_to_ms(later, "t"),
            Err(Error::InvalidArgument(_))
        ));
    }
}
