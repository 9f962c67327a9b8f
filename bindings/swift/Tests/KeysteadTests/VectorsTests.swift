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
            options: OpenOptions(prefix: "ks", flushInterval: 0)
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
}
