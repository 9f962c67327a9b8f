// Every outcome code with its HTTP status and WWW-Authenticate value (RFC 6750), reached
// through the real admin operations, and a small request handler built on them.

import Foundation
import XCTest
import keystead

/// What a Swift hub's request handler does with an `Authorization` value: the status to answer
/// with and the headers to add. The example README.md describes.
struct AuthDecision: Equatable {
    let status: Int
    let headers: [String: String]
    let keyId: String?
}

func authorize(_ store: KeyStore, authorization: String?, scopes: [String]) throws -> AuthDecision {
    let check = try store.verifyHeader(authorization: authorization ?? "", requiredScopes: scopes)
    var headers: [String: String] = [:]
    if let challenge = check.wwwAuthenticate {
        headers["WWW-Authenticate"] = challenge
    }
    return AuthDecision(
        status: Int(check.httpStatus),
        headers: headers,
        keyId: check.ok ? check.key?.id : nil
    )
}

final class OutcomeTests: XCTestCase {
    private var directory: URL!
    private var store: KeyStore!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("keystead-outcomes-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        store = try KeyStore.open(
            path: directory.appendingPathComponent("o.redb").path,
            options: OpenOptions(flushIntervalMs: 0)
        )
    }

    override func tearDownWithError() throws {
        try? store.close()
        try? FileManager.default.removeItem(at: directory)
    }

    private func expect(
        _ check: Verification, _ code: String, _ status: UInt16, _ challenge: String?,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(check.code, code, file: file, line: line)
        XCTAssertEqual(check.ok, code == "valid", file: file, line: line)
        XCTAssertEqual(UInt16(check.httpStatus), status, file: file, line: line)
        XCTAssertEqual(check.wwwAuthenticate, challenge, file: file, line: line)
    }

    func testEveryOutcomeCode() throws {
        let invalidToken = "Bearer error=\"invalid_token\""
        let created = try store.create(newKey: NewKey(name: "chat", scopes: ["chat:completions"]))
        let id = created.info.id
        var seen = Set<String>()
        func check(_ v: Verification, _ code: String, _ status: UInt16, _ challenge: String?,
                   line: UInt = #line) {
            expect(v, code, status, challenge, line: line)
            seen.insert(v.code)
        }

        check(try store.verifyHeader(authorization: "Bearer \(created.key)",
                                     requiredScopes: ["chat:completions"]), "valid", 200, nil)
        check(try store.verifyHeader(authorization: ""), "missing", 401, "Bearer")
        check(try store.verify(presented: "ks_typo"), "malformed", 400,
              "Bearer error=\"invalid_request\"")
        let other = try KeyStore.open(
            path: directory.appendingPathComponent("other.redb").path,
            options: OpenOptions(flushIntervalMs: 0))
        let foreign = try other.create(newKey: NewKey(name: "elsewhere")).key
        try other.close()
        check(try store.verify(presented: foreign), "not_found", 401, invalidToken)
        check(try store.verify(presented: created.key, requiredScopes: ["images"]),
              "insufficient_scope", 403,
              "Bearer error=\"insufficient_scope\", scope=\"images\"")
        _ = try store.disable(id: id)
        check(try store.verify(presented: created.key), "disabled", 401, invalidToken)
        _ = try store.enable(id: id)
        let rotated = try store.rotate(id: id, grace: 0)
        check(try store.verify(presented: created.key), "expired", 401, invalidToken)
        _ = try store.revoke(id: rotated.info.id)
        check(try store.verify(presented: rotated.key), "revoked", 401, invalidToken)
        XCTAssertEqual(seen, ["valid", "missing", "malformed", "not_found", "insufficient_scope",
                              "disabled", "expired", "revoked"])
    }

    func testRequestHandler() throws {
        let created = try store.create(newKey: NewKey(name: "dev-server-integration",
                                                      scopes: ["chat:completions"]))
        XCTAssertEqual(
            try authorize(store, authorization: "Bearer \(created.key)", scopes: ["chat:completions"]),
            AuthDecision(status: 200, headers: [:], keyId: created.info.id))
        XCTAssertEqual(
            try authorize(store, authorization: nil, scopes: ["chat:completions"]),
            AuthDecision(status: 401, headers: ["WWW-Authenticate": "Bearer"], keyId: nil))
        XCTAssertEqual(
            try authorize(store, authorization: "Bearer \(created.key)", scopes: ["images"]),
            AuthDecision(status: 403,
                         headers: ["WWW-Authenticate": "Bearer error=\"insufficient_scope\", scope=\"images\""],
                         keyId: nil))
        _ = try store.revoke(id: created.info.id)
        XCTAssertEqual(
            try authorize(store, authorization: "Bearer \(created.key)", scopes: ["chat:completions"]),
            AuthDecision(status: 401, headers: ["WWW-Authenticate": "Bearer error=\"invalid_token\""],
                         keyId: nil))
    }

    func testVerifyFromManyThreadsWhileAdminWrites() throws {
        let keys = try (0..<8).map { try store.create(newKey: NewKey(name: "k\($0)")) }
        let lock = NSLock()
        var failures: [String] = []
        DispatchQueue.concurrentPerform(iterations: 16) { i in
            if i == 0 {
                // One writer among the readers: revoking key 7 must not disturb the others.
                do { _ = try store.revoke(id: keys[7].info.id) } catch {
                    lock.lock(); failures.append("revoke: \(error)"); lock.unlock()
                }
                return
            }
            for round in 0..<50 {
                let key = keys[(i + round) % 7]
                do {
                    let check = try store.verify(presented: key.key)
                    if !check.ok {
                        lock.lock(); failures.append("\(key.info.id): \(check.code)"); lock.unlock()
                    }
                } catch {
                    lock.lock(); failures.append("\(error)"); lock.unlock()
                }
            }
        }
        XCTAssertEqual(failures, [])
        XCTAssertEqual(try store.verify(presented: keys[7].key).code, "revoked")
        try store.flush()
        let total = try (0..<7).reduce(UInt64(0)) { $0 + (try store.get(id: keys[$1].info.id)?.useCount ?? 0) }
        XCTAssertEqual(total, 15 * 50)
    }
}
