//! The counters behind `/metrics` (Prometheus text exposition format 0.0.4).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The statuses a check answers with; anything else is counted as `other`. No 431: hyper
/// answers an oversized head itself, before any check, so such a series would always read 0.
const STATUSES: [u16; 6] = [204, 400, 401, 403, 500, 503];
/// The outcomes of the core, in its order (`Outcome::ALL`), named by their codes.
const OUTCOMES: [keystead::Outcome; 8] = keystead::Outcome::ALL;
/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 1.0,
];

#[derive(Default)]
pub struct Metrics {
    by_status: [AtomicU64; STATUSES.len() + 1],
    by_outcome: [AtomicU64; OUTCOMES.len()],
    /// Cumulative counts are computed when rendered; each slot counts its own bucket only.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    duration_sum_ns: AtomicU64,
    connections_open: AtomicU64,
    connections_refused: AtomicU64,
}

impl Metrics {
    /// Counts one answered check.
    pub fn observe(&self, status: u16, outcome: Option<&str>, elapsed: Duration) {
        let slot = STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(STATUSES.len());
        self.by_status[slot].fetch_add(1, Relaxed);
        if let Some(i) = outcome.and_then(|o| OUTCOMES.iter().position(|x| x.as_str() == o)) {
            self.by_outcome[i].fetch_add(1, Relaxed);
        }
        let secs = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Relaxed);
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.duration_sum_ns.fetch_add(ns, Relaxed);
    }

    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
    }

    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Relaxed);
    }

    /// The whole exposition: the server's series, then the store's.
    pub fn render(&self, store: &keystead::KeyStore) -> String {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP keystead_check_requests_total Checks answered, by HTTP status.\n\
             # TYPE keystead_check_requests_total counter"
        );
        for (i, status) in STATUSES.iter().enumerate() {
            let n = self.by_status[i].load(Relaxed);
            let _ = writeln!(
                out,
                "keystead_check_requests_total{{status=\"{status}\"}} {n}"
            );
        }
        let other = self.by_status[STATUSES.len()].load(Relaxed);
        let _ = writeln!(
            out,
            "keystead_check_requests_total{{status=\"other\"}} {other}"
        );

        let _ = writeln!(
            out,
            "# HELP keystead_check_outcomes_total Checks that reached the store, by outcome.\n\
             # TYPE keystead_check_outcomes_total counter"
        );
        for (i, outcome) in OUTCOMES.iter().enumerate() {
            let n = self.by_outcome[i].load(Relaxed);
            let _ = writeln!(
                out,
                "keystead_check_outcomes_total{{outcome=\"{}\"}} {n}",
                outcome.as_str()
            );
        }

        let _ = writeln!(
            out,
            "# HELP keystead_check_duration_seconds Time from a check's request head to its \
             answer.\n# TYPE keystead_check_duration_seconds histogram"
        );
        let mut cumulative = 0u64;
        for (i, le) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            let _ = writeln!(
                out,
                "keystead_check_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        cumulative += self.buckets[BUCKETS.len()].load(Relaxed);
        let sum = self.duration_sum_ns.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(
            out,
            "keystead_check_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}\n\
             keystead_check_duration_seconds_sum {sum}\n\
             keystead_check_duration_seconds_count {cumulative}"
        );

        let _ = writeln!(
            out,
            "# HELP keystead_serve_connections_open Connections being served now.\n\
             # TYPE keystead_serve_connections_open gauge\n\
             keystead_serve_connections_open {}\n\
             # HELP keystead_serve_connections_refused_total Connections refused at the \
             connection limit.\n\
             # TYPE keystead_serve_connections_refused_total counter\n\
             keystead_serve_connections_refused_total {}",
            self.connections_open.load(Relaxed),
            self.connections_refused.load(Relaxed)
        );

        // The store handle's own counters (`KeyStore::stats`, docs/metrics.md), under the
        // names the Python and Node examples give them.
        render_store(&mut out, &store.stats());
        out
    }
}

/// The series of `KeyStore::stats`: the same names as the prometheus_client and prom-client
/// examples of the bindings, so a dashboard works whichever of them feeds it.
fn render_store(out: &mut String, stats: &keystead::Stats) {
    let _ = writeln!(
        out,
        "# HELP keystead_verifications_total Verifications by this server's store handle, by \
         outcome.\n# TYPE keystead_verifications_total counter"
    );
    for (outcome, n) in stats.outcomes() {
        let _ = writeln!(
            out,
            "keystead_verifications_total{{outcome=\"{}\"}} {n}",
            outcome.as_str()
        );
    }
    let counters = [
        (
            "keystead_verify_errors_total",
            "Verifications that ended in an error, not an outcome (e.g. store unavailable).",
            stats.verify_errors,
        ),
        (
            "keystead_cache_hits_total",
            "Verifications answered without reading a key record from the store.",
            stats.cache_hits,
        ),
        (
            "keystead_cache_misses_total",
            "Verifications that read a key record from the store.",
            stats.cache_misses,
        ),
        (
            "keystead_refreshes_total",
            "Reads of the store's change feed.",
            stats.refreshes,
        ),
        (
            "keystead_refresh_failures_total",
            "Reads of the store's change feed that failed.",
            stats.refresh_failures,
        ),
        (
            "keystead_flushes_total",
            "Batches of usage counts written to the store.",
            stats.flushes,
        ),
        (
            "keystead_flush_failures_total",
            "Usage writes that failed (their counts are kept for the next flush).",
            stats.flush_failures,
        ),
    ];
    for (name, help, n) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {n}"
        );
    }
    let gauges = [
        (
            "keystead_usage_pending",
            "Successful verifications counted in memory, not yet written to the store.",
            stats.usage_pending,
        ),
        (
            "keystead_cached_keys",
            "Keys whose record heads are in the record cache.",
            stats.cached_keys,
        ),
    ];
    for (name, help, n) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {n}");
    }
    // Absent until the first successful refresh: no made-up number for "never".
    if let Some(age) = stats.last_refresh_age {
        let _ = writeln!(
            out,
            "# HELP keystead_last_refresh_age_seconds Time since the change feed was last read \
             successfully.\n# TYPE keystead_last_refresh_age_seconds gauge\n\
             keystead_last_refresh_age_seconds {}",
            age.as_secs_f64()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_count_matches() {
        let store = keystead::KeyStore::open("memory:", keystead::Options::new()).unwrap();
        let m = Metrics::default();
        m.observe(204, Some("valid"), Duration::from_micros(30));
        m.observe(401, Some("not_found"), Duration::from_millis(3));
        m.observe(503, None, Duration::from_secs(5));
        m.observe(418, None, Duration::ZERO);
        let text = m.render(&store);
        for line in [
            "keystead_check_requests_total{status=\"204\"} 1",
            "keystead_check_requests_total{status=\"other\"} 1",
            "keystead_check_outcomes_total{outcome=\"not_found\"} 1",
            "keystead_check_duration_seconds_bucket{le=\"0.000025\"} 1",
            "keystead_check_duration_seconds_bucket{le=\"0.00005\"} 2",
            "keystead_check_duration_seconds_bucket{le=\"0.005\"} 3",
            "keystead_check_duration_seconds_bucket{le=\"1\"} 3",
            "keystead_check_duration_seconds_bucket{le=\"+Inf\"} 4",
            "keystead_check_duration_seconds_count 4",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
    }

    #[test]
    fn the_store_counters_follow_the_server_series() {
        let store = keystead::KeyStore::open("memory:", keystead::Options::new()).unwrap();
        let created = store.create(keystead::NewKey::new("svc")).unwrap();
        store.verify(created.key(), &[]).unwrap();
        store.verify(created.key(), &[]).unwrap();
        store.verify("not a key", &[]).unwrap();
        let text = Metrics::default().render(&store);
        for line in [
            "keystead_verifications_total{outcome=\"valid\"} 2",
            "keystead_verifications_total{outcome=\"malformed\"} 1",
            "keystead_verifications_total{outcome=\"insufficient_scope\"} 0",
            "keystead_cache_misses_total 1",
            "keystead_cache_hits_total 1",
            "keystead_usage_pending 2",
            "# TYPE keystead_cached_keys gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        // Every series has its HELP and TYPE, and no name is declared twice.
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let mut names: Vec<&str> = types.iter().map(|l| l.split(' ').nth(2).unwrap()).collect();
        names.sort_unstable();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "a metric declared twice:\n{text}");
        assert_eq!(
            text.lines().filter(|l| l.starts_with("# HELP ")).count(),
            count
        );
    }
}
