// XCTest suite for the generated Swift bindings: `swift test` as described in
// bindings/swift/README.md; scripts/test-swift.sh runs it in CI (Debian trixie chroot).

import Foundation
import XCTest
import keystead

final class KeysteadTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("keystead-swift-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private var path: String { directory.appendingPathComponent("keystead.redb").path }

    /// No background flusher: usage is written by flush(), usage(), close().
    private func openStore(_ options: OpenOptions = OpenOptions(flushIntervalMs: 0)) throws -> KeyStore {
        try KeyStore.open(path: path, options: options)
    }

    private static func caseName(_ error: KeysteadError) -> String {
        switch error {
        case .Store: return "Store"
        case .WrongPepper: return "WrongPepper"
        case .InvalidArgument: return "InvalidArgument"
        case .KeyNotFound: return "KeyNotFound"
        case .InvalidState: return "InvalidState"
        case .PrefixMismatch: return "PrefixMismatch"
        case .UnsupportedVersion: return "UnsupportedVersion"
        case .Closed: return "Closed"
        case .Unavailable: return "Unavailable"
        }
    }

    private func assertThrows<T>(
        _ expected: String,
        _ body: @autoclosure () throws -> T,
        file: StaticString = #filePath,
        line: UInt = #line
    ) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard let error = error as? KeysteadError else {
                return XCTFail("not a KeysteadError: \(error)", file: file, line: line)
            }
            XCTAssertEqual(Self.caseName(error), expected, "\(error)", file: file, line: line)
        }
    }

    func testCreateVerifyRevokeVerify() throws {
        let store = try openStore()
        defer { try? store.close() }

        let created = try store.create(newKey: NewKey(
            name: "dev-server-integration",
            scopes: ["chat:completions"]
        ))
        XCTAssertTrue(created.key.hasPrefix("ks_"))
        XCTAssertEqual(created.key.count, 3 + 61)
        XCTAssertEqual(created.info.name, "dev-server-integration")
        XCTAssertEqual(created.info.status, "active")

        let ok = try store.verifyHeader(
            authorization: "Bearer \(created.key)",
            requiredScopes: ["chat:completions"]
        )
        XCTAssertTrue(ok.ok)
        XCTAssertEqual(ok.code, "valid")
        XCTAssertEqual(ok.httpStatus, 200)
        XCTAssertNil(ok.wwwAuthenticate)
        XCTAssertEqual(ok.key?.id, created.info.id)
        XCTAssertEqual(ok.keyId, created.info.id)

        let revoked = try store.revoke(id: created.info.id)
        XCTAssertEqual(revoked.status, "revoked")

        let no = try store.verify(presented: created.key)
        XCTAssertFalse(no.ok)
        XCTAssertEqual(no.code, "revoked")
        XCTAssertEqual(no.httpStatus, 401)
        XCTAssertEqual(no.wwwAuthenticate, "Bearer error=\"invalid_token\"")
        // A refused key is named by its id only.
        XCTAssertNil(no.key)
        XCTAssertEqual(no.keyId, created.info.id)
    }

    func testOutcomesWithoutAKey() throws {
        let store = try openStore()
        defer { try? store.close() }

        let missing = try store.verifyHeader(authorization: "")
        XCTAssertEqual(missing.code, "missing")
        XCTAssertEqual(missing.httpStatus, 401)
        XCTAssertEqual(missing.wwwAuthenticate, "Bearer")

        let malformed = try store.verify(presented: "ks_typo")
        XCTAssertEqual(malformed.code, "malformed")
        XCTAssertEqual(malformed.httpStatus, 400)
        XCTAssertNil(malformed.key)
    }

    func testAdministration() throws {
        let store = try openStore(OpenOptions(flushIntervalMs: 0, actor: "swift-tests"))
        defer { try? store.close() }
        XCTAssertEqual(try store.prefix(), "ks")

        let created = try store.create(newKey: try NewKey(
            name: "analytics",
            scopes: ["embeddings"],
            metadata: ["owner": "platform"],
            expiresAt: Date().addingTimeInterval(3600)
        ))
        let id = created.info.id
        XCTAssertNotNil(created.info.expiresAt)
        XCTAssertEqual(created.info.metadata["owner"], "platform")

        XCTAssertEqual(try store.get(id: id)?.name, "analytics")
        XCTAssertEqual(try store.list().count, 1)
        XCTAssertEqual(try store.list(filter: ListFilter(scope: "embeddings")).count, 1)
        XCTAssertEqual(try store.list(filter: ListFilter(status: "revoked")).count, 0)

        XCTAssertEqual(try store.rename(id: id, name: "renamed").name, "renamed")
        XCTAssertEqual(try store.setScopes(id: id, scopes: ["images", "chat:completions"]).scopes,
                       ["chat:completions", "images"])
        XCTAssertEqual(try store.setMetadata(id: id, metadata: ["team": "ml"]).metadata, ["team": "ml"])
        XCTAssertNil(try store.setExpiry(id: id, expiresAt: nil).expiresAt)

        XCTAssertEqual(try store.disable(id: id).status, "disabled")
        XCTAssertEqual(try store.verify(presented: created.key).code, "disabled")
        XCTAssertEqual(try store.enable(id: id).status, "active")

        let scoped = try store.verify(presented: created.key, requiredScopes: ["embeddings"])
        XCTAssertEqual(scoped.code, "insufficient_scope")
        XCTAssertEqual(scoped.httpStatus, 403)
        XCTAssertTrue(try store.verify(presented: created.key, requiredScopes: ["images"]).ok)

        let now = Date()
        let usage = try store.usage(id: id, from: now.addingTimeInterval(-86_400), to: now)
        XCTAssertEqual(usage.reduce(0) { $0 + $1.count }, 1)
        try store.flush()
        XCTAssertEqual(try store.get(id: id)?.useCount, 1)

        let rotated = try store.rotate(id: id, grace: 60)
        XCTAssertNotEqual(rotated.key, created.key)
        XCTAssertEqual(rotated.info.replaces, id)
        XCTAssertEqual(try store.get(id: id)?.replacedBy, rotated.info.id)
        XCTAssertTrue(try store.verify(presented: created.key).ok)
        XCTAssertTrue(try store.verify(presented: rotated.key).ok)

        let audit = try store.audit()
        XCTAssertEqual(audit.first?.action, "create") // the rotation's new key, newest first
        XCTAssertTrue(audit.allSatisfy { $0.actor == "swift-tests" })
        XCTAssertEqual(try store.audit(since: nil, limit: 2).count, 2)

        try store.delete(id: rotated.info.id)
        XCTAssertNil(try store.get(id: rotated.info.id))
    }

    func testErrors() throws {
        let store = try openStore()
        assertThrows("InvalidArgument", try store.get(id: "nope"))
        assertThrows("InvalidArgument", try store.create(newKey: NewKey(name: "")))
        assertThrows("InvalidArgument", try store.list(filter: ListFilter(status: "sleeping")))

        let created = try store.create(newKey: NewKey(name: "k"))
        let gone = try store.create(newKey: NewKey(name: "gone")).info.id
        try store.delete(id: gone)
        assertThrows("KeyNotFound", try store.revoke(id: gone))

        _ = try store.revoke(id: created.info.id)
        assertThrows("InvalidState", try store.enable(id: created.info.id))
        try store.close()

        assertThrows("WrongPepper", try self.openStore(OpenOptions(pepper: Data("other pepper, 32 bytes or longer".utf8))))
        assertThrows("PrefixMismatch", try self.openStore(OpenOptions(prefix: "hub")))

        // KeysteadError is a LocalizedError carrying the core's message.
        do {
            _ = try openStore(OpenOptions(prefix: "hub"))
            XCTFail("expected PrefixMismatch")
        } catch KeysteadError.PrefixMismatch(let message) {
            XCTAssertTrue(message.contains("hub"), message)
        }
    }

    func testClose() throws {
        let store = try openStore()
        let created = try store.create(newKey: NewKey(name: "k"))
        XCTAssertTrue(try store.verify(presented: created.key).ok)
        XCTAssertFalse(store.isClosed())

        try store.close()
        XCTAssertTrue(store.isClosed())
        assertThrows("Closed", try store.verify(presented: created.key))
        assertThrows("Closed", try store.list())
        assertThrows("Closed", try store.create(newKey: NewKey(name: "x")))
        XCTAssertNoThrow(try store.close()) // closing twice is fine

        // The file is released and the usage was flushed.
        XCTAssertTrue(try checkIntegrity(path: path))
        let again = try openStore()
        defer { try? again.close() }
        XCTAssertEqual(try again.get(id: created.info.id)?.useCount, 1)
        XCTAssertTrue(try again.verify(presented: created.key).ok)
    }

    func testPepperAndPrefix() throws {
        let options = OpenOptions(prefix: "hub", pepper: Data("from-the-secret-manager-0123456789".utf8), flushIntervalMs: 0)
        let store = try openStore(options)
        let created = try store.create(newKey: NewKey(name: "x"))
        XCTAssertTrue(created.key.hasPrefix("hub_"))
        try store.close()

        let again = try openStore(options)
        defer { try? again.close() }
        XCTAssertTrue(try again.verify(presented: created.key).ok)
        XCTAssertFalse(String(describing: options).contains("from-the-secret-manager"))
    }

    func testDescriptionsNeverShowTheKey() throws {
        let store = try openStore()
        defer { try? store.close() }
        let created = try store.create(newKey: NewKey(name: "dev-server-integration"))
        for shown in [
            "\(created)",
            String(describing: created),
            String(reflecting: created),
            created.description,
            created.debugDescription,
        ] {
            XCTAssertFalse(shown.contains(created.key), shown)
            XCTAssertTrue(shown.contains(created.info.id), shown)
        }
    }

    func testConcurrentVerify() throws {
        let store = try openStore()
        defer { try? store.close() }
        let created = try store.create(newKey: NewKey(name: "k"))
        DispatchQueue.concurrentPerform(iterations: 64) { _ in
            XCTAssertEqual(try? store.verify(presented: created.key).ok, true)
        }
        try store.flush()
        XCTAssertEqual(try store.get(id: created.info.id)?.useCount, 64)
    }
}
