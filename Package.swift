// swift-tools-version: 6.1
//
// lnrr: a record-and-replay debugging proxy for the Lightning Network peer protocol (BOLT 8).
//
// Layers, with dependencies pointing one way (top depends on bottom):
//
//   lnrr (CLI)
//   LNReplay ─┐
//   LNProxy ──┼─> LNTransportNIO ─> LNTransport ─> CSecp256k1, CSodium
//     │       ├─> LNRules ─> LNWire
//     │       └─> LNRecording
//     └─> LNRelay (the proxy's sans-I/O session core) ─> LNRules, LNRecording, LNWire
//
// LNTransport, LNWire, LNRecording, LNRules and LNRelay do no I/O and do not import NIO. LNHex (the one
// hex codec) sits under both LNTransport and LNWire, which re-export it. LNFileIO (descriptor reads
// and writes with their retries) sits under LNTransport (key files), LNRecording and the CLI.
import PackageDescription

/// Targets that only move bytes through NIO channels keep Swift 5 mode: their state is confined to
/// one event loop, which NIO enforces at run time, and Swift 6's checker cannot see that.
let nioGlue: [SwiftSetting] = [.swiftLanguageMode(.v5)]

let package = Package(
    name: "lnrr",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "lnrr", targets: ["lnrr"]),
        .library(name: "LNTransport", targets: ["LNTransport"]),
        .library(name: "LNWire", targets: ["LNWire"]),
        .library(name: "LNRecording", targets: ["LNRecording"]),
        .library(name: "LNRules", targets: ["LNRules"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
    ],
    targets: [
        // System libraries, found through pkg-config. `providers` makes SwiftPM name the Debian
        // package to install when pkg-config cannot find one.
        .systemLibrary(
            name: "CSecp256k1",
            pkgConfig: "libsecp256k1",
            providers: [.apt(["libsecp256k1-dev", "pkg-config"])]
        ),
        .systemLibrary(
            name: "CSodium",
            pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev", "pkg-config"])]
        ),

        // BOLT 8 handshake, cipher states and framing as I/O-free state machines; node keys.
        // The one hex codec (HexString), below both LNTransport and LNWire, which re-export it.
        .target(name: "LNHex"),
        // Descriptor reads and writes with the EINTR and short-write retries, in one place.
        .target(name: "LNFileIO"),
        .target(name: "LNTransport", dependencies: ["LNHex", "LNFileIO", "CSecp256k1", "CSodium"]),
        // Lightning messages: the catalogue generated from the BOLT CSVs, codec, phase tracking.
        .target(name: "LNWire", dependencies: ["LNHex", "CSodium"]),
        // CRC-32 folded with carry-less multiplication (x86-64 PCLMULQDQ, checked at run time):
        // the recording's per-message checksum, off the relay's critical path cost.
        .target(name: "CCRC32"),
        // pcapng recordings: crash-safe writer and a reader that survives truncation.
        .target(name: "LNRecording", dependencies: ["LNWire", "LNFileIO", "CCRC32"]),
        // Rule files (YAML), matching and actions.
        .target(name: "LNRules", dependencies: ["LNWire", .product(name: "Yams", package: "Yams")]),
        // NIO glue: runs the BOLT 8 state machine on a channel; yields whole messages.
        .target(
            name: "LNTransportNIO",
            dependencies: ["LNTransport", .product(name: "NIOCore", package: "swift-nio")]
        ),
        // The relay core: one proxied session as a state machine without I/O (no NIO), Swift 6 mode.
        // Cross-module optimisation lets the proxy's driver specialise the generic core for NIO's
        // ByteBuffer: without it every relayed message would go through unspecialised generic code.
        .target(name: "LNRelay", dependencies: ["LNWire", "LNRules", "LNRecording"],
                swiftSettings: [.unsafeFlags(["-cross-module-optimization"], .when(configuration: .release))]),
        // The man-in-the-middle proxy (a NIO driver of LNRelay's core) and the embedded test peer.
        .target(
            name: "LNProxy",
            dependencies: [
                "LNTransport", "LNTransportNIO", "LNWire", "LNRecording", "LNRules", "LNRelay",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            // Dynamic exclusivity checks cost a runtime call per access to a session's state, on every
            // relayed message; the state is confined to one event loop, so release builds skip them.
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
        ),
        // Replaying one side of a recording against a live node.
        .target(
            name: "LNReplay",
            dependencies: [
                "LNProxy", "LNTransport", "LNTransportNIO", "LNWire", "LNRecording", "LNRules", "LNRelay",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: []
        ),
        .executableTarget(
            name: "lnrr",
            dependencies: [
                "LNTransport", "LNTransportNIO", "LNWire", "LNRecording", "LNRules", "LNRelay", "LNProxy", "LNReplay",
                "LNFileIO",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: nioGlue
        ),

        // Benchmarks: every figure next to a baseline measured in the same run (see docs/performance.md).
        .executableTarget(
            name: "lnrr-bench",
            dependencies: [
                "LNTransport", "LNTransportNIO", "LNProxy", "LNRecording", "CSodium", "CSecp256k1",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: nioGlue
        ),

        .testTarget(name: "LNTransportTests", dependencies: ["LNTransport"]),
        .testTarget(name: "LNWireTests", dependencies: ["LNWire"]),
        .testTarget(name: "LNRecordingTests", dependencies: ["LNRecording", "LNFileIO"]),
        .testTarget(name: "LNRulesTests", dependencies: ["LNRules", "LNWire"]),
        .testTarget(name: "LNRelayTests", dependencies: ["LNRelay", "LNRules", "LNWire", "LNRecording"]),
        .testTarget(name: "LNReplayTests", dependencies: ["LNReplay", "LNRelay", "LNRecording", "LNRules", "LNWire"], swiftSettings: nioGlue),
        .testTarget(
            name: "LNTransportNIOTests",
            dependencies: [
                "LNTransport", "LNTransportNIO",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
    ]
)
