// `store.stats()`: the handle's counters as a uniffi Record (docs/metrics.md), and the
// Prometheus text example of bindings/swift/README.md ("Numbers to watch").

import Foundation
import XCTest
import keystead

/// The README's example, verbatim: one scrape's worth of Prometheus text from `stats()`.
func prometheusText(_ stats: Stats) -> String {
    var lines: [String] = []
    for (outcome, count) in stats.outcomes.sorted(by: { $0.key < $1.key }) {
        lines.append("keystead_verifications_total{outcome=\"\(outcome)\"} \(count)")
    }
    lines.append("keystead_cache_hits_total \(stats.cacheHits)")
    lines.append("keystead_cache_misses_total \(stats.cacheMisses)")
    lines.append("keystead_flush_failures_total \(stats.flushFailures)")
    lines.append("keystead_usage_pending \(stats.usagePending)")
    if let age = stats.lastRefreshAgeMs {
        lines.append("keystead_last_refresh_age_seconds \(Double(age) / 1000)")
    }
    return lines.joined(separator: "\n") + "\n"
}

final class StatsTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("keystead-swift-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func testCountersMove() throws {
        let path = directory.appendingPathComponent("keystead.redb").path
        let store = try KeyStore.open(path: path, options: OpenOptions(flushIntervalMs: 0))
        defer { try? store.close() }

        let fresh = try store.stats()
        XCTAssertEqual(fresh.outcomes.count, 8)
        XCTAssertEqual(fresh.verifications, 0)
        XCTAssertNil(fresh.lastRefreshAgeMs)

        let created = try store.create(newKey: NewKey(name: "good"))
        _ = try store.verify(presented: created.key)
        _ = try store.verify(presented: created.key)
        _ = try store.verify(presented: "ks_typo")

        let stats = try store.stats()
        XCTAssertEqual(stats.outcomes["valid"], 2)
        XCTAssertEqual(stats.outcomes["malformed"], 1)
        XCTAssertEqual(stats.outcomes["not_found"], 0)
        XCTAssertEqual(stats.verifications, 3)
        XCTAssertEqual(stats.cacheMisses, 1)
        XCTAssertEqual(stats.cacheHits, 1)
        XCTAssertEqual(stats.usagePending, 2)
        XCTAssertEqual(stats.cachedKeys, 1)
        XCTAssertNotNil(stats.lastRefreshAgeMs)

        let text = prometheusText(stats)
        XCTAssertTrue(text.contains("keystead_verifications_total{outcome=\"valid\"} 2\n"))
        XCTAssertTrue(text.contains("keystead_usage_pending 2\n"))
        XCTAssertFalse(text.contains(created.key))

        try store.flush()
        let after = try store.stats()
        XCTAssertEqual(after.flushes, 1)
        XCTAssertEqual(after.usagePending, 0)
    }
}
