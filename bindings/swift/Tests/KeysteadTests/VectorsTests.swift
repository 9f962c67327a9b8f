// The shared vectors of tests/vectors (also run by the Rust, Python and Node suites): every
// binding must reach the same outcome codes. scripts/test-swift.sh copies them into the chroot
// and names the directory in KEYSTEAD_VECTORS_DIR; run elsewhere, they are found relative to
// this file.

import Foundation
import XCTest
import keystead

private func vectorsDirectory() -> URL {
    if let dir = ProcessInfo.processInfo.environment["KEYSTEAD_VECTORS_DIR"] {
        return URL(fileURLWithPath: dir, isDirectory: true)
    }
    // bindings/swift/Tests/KeysteadTests/VectorsTests.swift -> tests/vectors
    return URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("tests/vectors", isDirectory: true)
}

private func cases(_ file: String) throws -> [[String: Any]] {
    let data = try Data(contentsOf: vectorsDirectory().appendingPathComponent(file))
    let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    let found = try XCTUnwrap(json["cases"] as? [[String: Any]])
    XCTAssertFalse(found.isEmpty, "no cases in \(file)")
    return found
}

final class VectorsTests: XCTestCase {
    private var directory: URL!
    private var store: KeyStore!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("keystead-vectors-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        store = try KeyStore.open(
            path: directory.appendingPathComponent("v.redb").path,
            options: OpenOptions(prefix: "ks", flushIntervalMs: 0)
        )
    }

    override func tearDownWithError() throws {
        try? store.close()
        try? FileManager.default.removeItem(at: directory)
    }

    func testKeyVectors() throws {
        let all = try cases("keys.json")
        for c in all {
            let name = c["name"] as? String ?? "?"
            let key = try XCTUnwrap(c["key"] as? String, name)
            let expected = try XCTUnwrap(c["verify"] as? String, name)
            let check = try store.verify(presented: key)
            XCTAssertEqual(check.code, expected, name)
            XCTAssertFalse(check.ok, name)
            XCTAssertNil(check.key, name)
            XCTAssertTrue([400, 401].contains(check.httpStatus), name)
            XCTAssertNotNil(check.wwwAuthenticate, name)
        }
        XCTAssertGreaterThan(all.count, 20)
    }

    func testHeaderVectors() throws {
        let all = try cases("headers.json")
        for c in all {
            let name = c["name"] as? String ?? "?"
            let header = try XCTUnwrap(c["header"] as? String, name)
            let expected = try XCTUnwrap(c["verify"] as? String, name)
            XCTAssertEqual(try store.verifyHeader(authorization: header).code, expected, name)
        }
        XCTAssertGreaterThan(all.count, 20)
    }

    /// lifecycle.json: scripted admin steps, each verify with the code, HTTP status and
    /// WWW-Authenticate every binding must give; the scripts reach all eight codes.
    func testLifecycleVectors() throws {
        var seen = Set<String>()
        for (n, c) in try cases("lifecycle.json").enumerated() {
            let name = c["name"] as? String ?? "?"
            let store = try KeyStore.open(
                path: directory.appendingPathComponent("l\(n).redb").path,
                options: OpenOptions(prefix: "ks", flushIntervalMs: 0)
            )
            defer { try? store.close() }
            var keys: [String: (key: String, id: String)] = [:]
            let steps = try XCTUnwrap(c["steps"] as? [[String: Any]], name)
            for (i, step) in steps.enumerated() {
                let at = "\(name), step \(i)"
                let op = try XCTUnwrap(step["op"] as? String, at)
                let scopes = step["scopes"] as? [String] ?? []
                func id() throws -> String {
                    try XCTUnwrap(keys[try XCTUnwrap(step["key"] as? String, at)], at).id
                }
                switch op {
                case "create":
                    let created = try store.create(newKey: NewKey(
                        name: try XCTUnwrap(step["name"] as? String, at), scopes: scopes))
                    keys[try XCTUnwrap(step["as"] as? String, at)] = (created.key, created.info.id)
                case "disable": _ = try store.disable(id: try id())
                case "enable": _ = try store.enable(id: try id())
                case "revoke": _ = try store.revoke(id: try id())
                case "delete": try store.delete(id: try id())
                case "set_scopes": _ = try store.setScopes(id: try id(), scopes: scopes)
                case "rotate":
                    let graceMs = try XCTUnwrap(step["grace_ms"] as? Int, at)
                    let rotated = try store.rotate(id: try id(), grace: Double(graceMs) / 1000)
                    keys[try XCTUnwrap(step["as"] as? String, at)] = (rotated.key, rotated.info.id)
                case "verify", "verify_header":
                    let check: Verification
                    if op == "verify" {
                        let presented: String
                        if let raw = step["raw"] as? String {
                            presented = raw
                        } else {
                            presented = try XCTUnwrap(keys[try XCTUnwrap(step["key"] as? String, at)], at).key
                        }
                        check = try store.verify(presented: presented, requiredScopes: scopes)
                    } else {
                        var header = try XCTUnwrap(step["header"] as? String, at)
                        for (k, v) in keys { header = header.replacingOccurrences(of: "{\(k)}", with: v.key) }
                        check = try store.verifyHeader(authorization: header, requiredScopes: scopes)
                    }
                    let expect = try XCTUnwrap(step["expect"] as? [String: Any], at)
                    XCTAssertEqual(check.code, expect["code"] as? String, at)
                    XCTAssertEqual(Int(check.httpStatus), expect["http_status"] as? Int, at)
                    XCTAssertEqual(check.wwwAuthenticate, expect["www_authenticate"] as? String, at)
                    XCTAssertEqual(check.ok, check.code == "valid", at)
                    seen.insert(check.code)
                default:
                    XCTFail("\(at): unknown op \(op)")
                }
            }
        }
        XCTAssertEqual(seen, ["valid", "missing", "malformed", "not_found", "disabled", "revoked",
                              "expired", "insufficient_scope"])
    }
}
