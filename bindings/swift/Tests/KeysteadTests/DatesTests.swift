// Times cross the FFI as Int64 milliseconds; the Date/TimeInterval forms in KeysteadDates.swift
// must never trap (crash the test process) on any input, and bad values are typed errors.

import Foundation
import XCTest
import keystead

final class DatesTests: XCTestCase {
    private var store: KeyStore!

    override func setUpWithError() throws {
        store = try KeyStore.open(path: "memory:", options: OpenOptions(flushIntervalMs: 0))
    }

    override func tearDownWithError() throws {
        try? store.close()
    }

    private func assertInvalidArgument<T>(
        _ body: @autoclosure () throws -> T, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard case KeysteadError.InvalidArgument = error else {
                return XCTFail("not InvalidArgument: \(error)", file: file, line: line)
            }
        }
    }

    func testDatesWithoutAMillisecondValueThrowInsteadOfTrapping() throws {
        let id = try store.create(newKey: NewKey(name: "k")).info.id
        let bad: [Date] = [
            Date(timeIntervalSince1970: .nan),
            Date(timeIntervalSince1970: .infinity),
            Date(timeIntervalSince1970: -.infinity),
            Date(timeIntervalSince1970: 1e300),
            Date(timeIntervalSince1970: -1e300),
        ]
        for date in bad {
            assertInvalidArgument(try date.keysteadMilliseconds())
            assertInvalidArgument(try self.store.setExpiry(id: id, expiresAt: date))
            assertInvalidArgument(try NewKey(name: "x", expiresAt: date))
            assertInvalidArgument(try self.store.usage(id: id, from: date, to: Date()))
            assertInvalidArgument(try self.store.audit(since: date))
        }
        XCTAssertNil(try store.get(id: id)?.expiresAt)
    }

    func testTimesTheCoreCannotStoreAreInvalidArguments() throws {
        let id = try store.create(newKey: NewKey(name: "k")).info.id
        let year10000 = Date(timeIntervalSince1970: 253_402_300_800)
        assertInvalidArgument(try self.store.setExpiry(id: id, expiresAt: year10000))
        assertInvalidArgument(try self.store.setExpiry(id: id, expiresAt: Date(timeIntervalSinceNow: -1)))
        assertInvalidArgument(try self.store.create(newKey: try NewKey(name: "x", expiresAt: year10000)))
        assertInvalidArgument(try self.store.setExpiry(id: id, expiresAtMs: Int64.max))
        assertInvalidArgument(try self.store.setExpiry(id: id, expiresAtMs: Int64.min))
        // Date.distantFuture (year 4001) is fine.
        XCTAssertEqual(try store.setExpiry(id: id, expiresAt: Date.distantFuture).status, "active")
    }

    func testDurationsThatAreNegativeOrNotFiniteThrowInsteadOfTrapping() throws {
        let id = try store.create(newKey: NewKey(name: "k")).info.id
        for grace in [-1, -0.001, .nan, .infinity, -.infinity, 1e300, 200_000_000 * 86_400.0] as [TimeInterval] {
            assertInvalidArgument(try self.store.rotate(id: id, grace: grace))
        }
        assertInvalidArgument(try self.store.rotate(id: id, graceMs: -1))
        assertInvalidArgument(try KeyStore.open(path: "memory:", options: OpenOptions(refreshIntervalMs: -1)))
        assertInvalidArgument(try KeyStore.open(path: "memory:", options: OpenOptions(maxStalenessMs: -1)))
        for staleness in [0, 5_000, Int64.max] as [Int64] {
            let opened = try KeyStore.open(path: "memory:", options: OpenOptions(maxStalenessMs: staleness, flushIntervalMs: 0))
            try opened.close()
        }
        assertInvalidArgument(try self.store.list(filter: ListFilter(expiringWithinMs: -1)))
        // Nothing happened to the key.
        XCTAssertNil(try store.get(id: id)?.replacedBy)
        XCTAssertEqual(try store.rotate(id: id, grace: 0.5).info.replaces, id)
    }

    func testTimesRoundTripToTheMillisecond() throws {
        let before = Date()
        let at = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + 3600).rounded(.down) + 0.123)
        let created = try store.create(newKey: try NewKey(name: "k", expiresAt: at))
        XCTAssertEqual(created.info.expiresAtMs, try at.keysteadMilliseconds())
        XCTAssertEqual(created.info.expiresAt!.timeIntervalSince1970, at.timeIntervalSince1970, accuracy: 0.0005)
        XCTAssertGreaterThanOrEqual(created.info.createdAt.timeIntervalSince1970 + 0.001, before.timeIntervalSince1970)
        XCTAssertTrue(try store.verify(presented: created.key).ok)
        try store.flush()
        let days = try store.usage(id: created.info.id, from: Date.distantPast, to: Date())
        XCTAssertEqual(days.reduce(0) { $0 + $1.count }, 1)
        XCTAssertEqual(days.first!.day.timeIntervalSince1970.truncatingRemainder(dividingBy: 86_400), 0)
        let entry = try XCTUnwrap(try store.audit(since: before).first)
        XCTAssertGreaterThanOrEqual(entry.at.timeIntervalSince1970 + 0.001, before.timeIntervalSince1970)
        XCTAssertEqual(Date(keysteadMilliseconds: -1500).timeIntervalSince1970, -1.5)
    }
}
