// Hand-written, not generated (generate.sh leaves this file alone; scripts/test-swift.sh checks
// every other file in Sources/ against the generator): `Date` and `TimeInterval` forms of the
// API's times.
//
// The FFI carries every time as whole milliseconds since the Unix epoch (`Int64`) and every
// duration as whole milliseconds, because uniffi's own `Date` and `TimeInterval` conversions
// trap (crash the process) on a NaN, infinite, negative or out-of-range value. These
// conversions never trap: a value with no millisecond form throws
// `KeysteadError.InvalidArgument`, and the core refuses what it cannot store (a negative
// duration, a time after 9999-12-31) the same way.

import Foundation

/// Whole milliseconds (rounded down) of `seconds`, or `InvalidArgument` naming `what`.
private func milliseconds(_ seconds: Double, _ what: String) throws -> Int64 {
    let ms = (seconds * 1000).rounded(.down)
    // Int64's range is ±9.22e18; a Double at or past ±2^63 has no Int64 form.
    guard ms.isFinite, ms >= -9_223_372_036_854_775_808.0, ms < 9_223_372_036_854_775_808.0
    else {
        throw KeysteadError.InvalidArgument(message: "\(what) has no millisecond value: \(seconds) s")
    }
    return Int64(ms)
}

extension Date {
    /// The date `ms` milliseconds after the Unix epoch (before it if negative).
    public init(keysteadMilliseconds ms: Int64) {
        self.init(timeIntervalSince1970: Double(ms) / 1000)
    }

    /// Milliseconds since the Unix epoch, rounded down.
    /// - Throws: `KeysteadError.InvalidArgument` for a date with no such value (NaN, infinite,
    ///   or beyond ±292 million years).
    public func keysteadMilliseconds() throws -> Int64 {
        try milliseconds(timeIntervalSince1970, "date")
    }
}

extension KeyInfo {
    /// When the key was created.
    public var createdAt: Date { Date(keysteadMilliseconds: createdAtMs) }
    /// When the key's record last changed.
    public var updatedAt: Date { Date(keysteadMilliseconds: updatedAtMs) }
    /// When the key stops verifying, if ever.
    public var expiresAt: Date? { expiresAtMs.map(Date.init(keysteadMilliseconds:)) }
    /// The last successful verification recorded in the store.
    public var lastUsedAt: Date? { lastUsedAtMs.map(Date.init(keysteadMilliseconds:)) }
}

extension DailyUsage {
    /// Midnight UTC at the start of the day.
    public var day: Date { Date(keysteadMilliseconds: dayMs) }
}

extension AuditEntry {
    /// When the change was committed.
    public var at: Date { Date(keysteadMilliseconds: atMs) }
}

extension NewKey {
    /// A key to create that stops verifying at `expiresAt` (nil: never).
    /// - Throws: `KeysteadError.InvalidArgument` for a date with no millisecond value.
    public init(
        name: String, scopes: [String] = [], metadata: [String: String] = [:], expiresAt: Date?
    ) throws {
        self.init(
            name: name, scopes: scopes, metadata: metadata,
            expiresAtMs: try expiresAt?.keysteadMilliseconds()
        )
    }
}

extension KeyStore {
    /// Sets (or with nil clears) a key's expiry; a new expiry must be in the future.
    /// - Throws: `KeysteadError.InvalidArgument` for a date in the past, after 9999 or with no
    ///   millisecond value; the other errors of `setExpiry(id:expiresAtMs:)`.
    public func setExpiry(id: String, expiresAt: Date?) throws -> KeyInfo {
        try setExpiry(id: id, expiresAtMs: try expiresAt?.keysteadMilliseconds())
    }

    /// Issues a replacement key; the old one keeps verifying for `grace` seconds.
    /// - Throws: `KeysteadError.InvalidArgument` for a negative, NaN or infinite grace, or one
    ///   that would end after 9999; the other errors of `rotate(id:graceMs:)`.
    public func rotate(id: String, grace: TimeInterval) throws -> CreatedKey {
        try rotate(id: id, graceMs: try milliseconds(grace, "grace"))
    }

    /// Daily counts of successful verifications for the UTC days from `from` to `to` inclusive.
    public func usage(id: String, from: Date, to: Date) throws -> [DailyUsage] {
        try usage(id: id, fromMs: try from.keysteadMilliseconds(), toMs: try to.keysteadMilliseconds())
    }

    /// The audit log, newest first: at most `limit` entries committed at or after `since`.
    public func audit(since: Date?, limit: UInt32 = 100) throws -> [AuditEntry] {
        try audit(sinceMs: try since?.keysteadMilliseconds(), limit: limit)
    }
}
