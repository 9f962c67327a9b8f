//! `keystead usage`: one key's successful verifications per UTC day as a bar chart, or the
//! busiest keys of a recent window (`--top N --since 7d`).

use std::env;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::builder::TypedValueParser as _;
use clap::Args;
use keystead::KeyStore;
use serde_json::{json, Value};

use crate::error::{Failure, EXIT_OK};
use crate::output::{self, bar_chart, Glyphs};
use crate::timefmt::{format_date, format_time};
use crate::{duration_arg, emit, emit_json, key_id, open_existing, plural, Ctx, DurationArg};

const DAY_SECS: u64 = 86_400;
/// The window of `--top` when `--since` is not given.
const DEFAULT_SINCE: &str = "7d";
/// The longest range either form reads: 100 years of UTC days.
const MAX_DAYS: u64 = 36_600;

#[derive(Args, Debug)]
pub struct UsageArgs {
    /// The key's 12-character id (not the full key); not with --top
    #[arg(conflicts_with = "top")]
    id: Option<String>,
    /// How many UTC days, today included [default: 30]
    #[arg(long, value_name = "N", conflicts_with = "top",
          value_parser = clap::value_parser!(u32).range(1..=36_600))]
    days: Option<u32>,
    /// Instead of one key: the N keys with the most uses in the --since window
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000).try_map(usize::try_from))]
    top: Option<usize>,
    /// With --top: the window, e.g. 24h, 7d, 30d, rounded up to whole UTC days, today
    /// included [default: 7d]
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    since: Option<DurationArg>,
    /// Draw the chart with ASCII characters only (the default unless the locale is UTF-8)
    #[arg(long)]
    ascii: bool,
}

pub fn run(ctx: &Ctx, args: UsageArgs) -> Result<u8, Failure> {
    if args.top.is_none() {
        if let Some(since) = &args.since {
            return Err(Failure::usage(format!(
                "--since {} needs --top N (a key's own range is --days N)",
                since.raw
            )));
        }
    }
    match (args.top, args.id) {
        (Some(limit), _) => {
            let since = match args.since {
                Some(since) => since,
                None => duration_arg(DEFAULT_SINCE).map_err(Failure::usage)?,
            };
            top(ctx, limit, &since)
        }
        (None, Some(id)) => one_key(ctx, &id, args.days.unwrap_or(30), glyphs(args.ascii)),
        (None, None) => Err(Failure::usage(
            "usage needs a key id (`keystead usage ID`), or --top N for the busiest keys",
        )),
    }
}

/// Block elements when the locale says UTF-8 (`LC_ALL`, else `LC_CTYPE`, else `LANG`, the
/// first one set and not empty, as setlocale reads them) and `--ascii` is not given.
fn glyphs(ascii: bool) -> Glyphs {
    if ascii {
        return Glyphs::Ascii;
    }
    let locale = ["LC_ALL", "LC_CTYPE", "LANG"]
        .iter()
        .filter_map(|name| env::var(name).ok())
        .find(|value| !value.is_empty())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if locale.contains("utf-8") || locale.contains("utf8") {
        Glyphs::Unicode
    } else {
        Glyphs::Ascii
    }
}

/// The first instant of a range of `days` UTC days ending today (`now`'s day); never before
/// the epoch.
fn start_of(now: SystemTime, days: u64) -> SystemTime {
    let back = Duration::from_secs(days.saturating_sub(1).saturating_mul(DAY_SECS));
    now.checked_sub(back).unwrap_or(UNIX_EPOCH).max(UNIX_EPOCH)
}

/// Midnight UTC of `time`'s day.
fn day_start(time: SystemTime) -> SystemTime {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(secs - secs % DAY_SECS)
}

fn one_key(ctx: &Ctx, id: &str, days: u32, glyphs: Glyphs) -> Result<u8, Failure> {
    let id = key_id(id)?;
    let store = open_existing(ctx)?;
    let info = store.get(id)?.ok_or(keystead::Error::KeyNotFound(id))?;
    let now = SystemTime::now();
    let from = start_of(now, u64::from(days));
    let used = store.usage(id, from, now)?;
    // Every day of the range, the days without uses as zeros.
    let mut daily: Vec<(SystemTime, u64)> = Vec::new();
    let mut day = day_start(from);
    let last = day_start(now);
    while day <= last {
        daily.push((day, 0));
        day += Duration::from_secs(DAY_SECS);
    }
    for d in &used {
        if let Some(slot) = daily.iter_mut().find(|(day, _)| *day == d.day) {
            slot.1 = d.count;
        }
    }
    let total = daily
        .iter()
        .fold(0u64, |sum, (_, count)| sum.saturating_add(*count));
    if ctx.json {
        let entries: Vec<Value> = daily
            .iter()
            .map(|(day, count)| json!({ "day": format_time(*day), "count": count }))
            .collect();
        emit_json(&json!({
            "id": id.to_string(),
            "name": info.name(),
            "days": days,
            "from": format_date(from),
            "to": format_date(now),
            "total": total,
            "daily": entries,
            "use_count": info.use_count(),
            "last_used_at": info.last_used_at().map(format_time),
        }))?;
    } else {
        let mut text = format!(
            "Key {id} {}: {} in the last {} ({} to {}).\n",
            output::quoted(info.name()),
            plural(total, "successful verification"),
            plural(u64::from(days), "UTC day"),
            format_date(from),
            format_date(now)
        );
        let rows: Vec<(String, u64)> = daily
            .iter()
            .map(|(day, count)| (format_date(*day), *count))
            .collect();
        text.push_str(&bar_chart(&rows, glyphs));
        let last = info
            .last_used_at()
            .map_or_else(|| "never".to_owned(), format_time);
        text.push_str(&format!(
            "All time: {}, last used {last}.\n",
            plural(info.use_count(), "use")
        ));
        emit(&text)?;
    }
    store.close()?;
    Ok(EXIT_OK)
}

/// A share of `total` in percent, to one decimal.
fn share(count: u64, total: u64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    let tenths = (u128::from(count) * 2000 + u128::from(total)) / (u128::from(total) * 2);
    tenths as f64 / 10.0
}

fn top(ctx: &Ctx, limit: usize, since: &DurationArg) -> Result<u8, Failure> {
    let days = since.value.as_secs().div_ceil(DAY_SECS);
    if days > MAX_DAYS {
        return Err(Failure::usage(format!(
            "--since {} is longer than {MAX_DAYS} days, the longest range usage reads",
            since.raw
        )));
    }
    let store: KeyStore = open_existing(ctx)?;
    let now = SystemTime::now();
    let from = start_of(now, days);
    let top = store.busiest_keys(from, now, limit)?;
    if ctx.json {
        let keys: Vec<Value> = top
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                json!({
                    "rank": i + 1,
                    "id": k.key.id().to_string(),
                    "name": k.key.name(),
                    "count": k.count,
                    "share_percent": share(k.count, top.total),
                    "last_used_at": k.key.last_used_at().map(format_time),
                })
            })
            .collect();
        emit_json(&json!({
            "since": since.raw,
            "days": days,
            "from": format_date(from),
            "to": format_date(now),
            "total": top.total,
            "keys_used": top.keys_used,
            "top": keys,
        }))?;
    } else {
        let mut text = format!(
            "Busiest keys over the last {} ({} to {}): {} by {}.\n",
            plural(days, "UTC day"),
            format_date(from),
            format_date(now),
            plural(top.total, "successful verification"),
            plural(top.keys_used as u64, "key"),
        );
        if !top.keys.is_empty() {
            let rows: Vec<Vec<String>> = top
                .keys
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    vec![
                        (i + 1).to_string(),
                        k.key.id().to_string(),
                        output::printable(k.key.name()).into_owned(),
                        k.count.to_string(),
                        format!("{:.1}%", share(k.count, top.total)),
                        k.key
                            .last_used_at()
                            .map_or_else(|| "never".to_owned(), format_time),
                    ]
                })
                .collect();
            text.push_str(&output::table(
                &["RANK", "ID", "NAME", "USES", "SHARE", "LAST USED"],
                &rows,
            ));
        }
        emit(&text)?;
    }
    store.close()?;
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_round_to_a_tenth() {
        assert_eq!(share(1, 3), 33.3);
        assert_eq!(share(2, 3), 66.7);
        assert_eq!(share(5, 5), 100.0);
        assert_eq!(share(0, 0), 0.0);
        assert_eq!(share(u64::MAX, u64::MAX), 100.0);
    }

    #[test]
    fn a_range_of_days_ends_today_and_starts_no_earlier_than_the_epoch() {
        let now = UNIX_EPOCH + Duration::from_secs(10 * DAY_SECS + 5);
        assert_eq!(day_start(start_of(now, 1)), day_start(now));
        assert_eq!(
            day_start(start_of(now, 7)),
            UNIX_EPOCH + Duration::from_secs(4 * DAY_SECS)
        );
        assert_eq!(start_of(now, 1000), UNIX_EPOCH);
    }
}
