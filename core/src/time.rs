//! Timestamps: `SystemTime` in the API, milliseconds since the Unix epoch on disk.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds in a day, the width of a usage bucket (UTC days).
pub(crate) const DAY_MS: i64 = 86_400_000;

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
}
