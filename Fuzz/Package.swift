// swift-tools-version:5.4
//
// libFuzzer harnesses for lnrr's parsers of untrusted input. A package of its own so that the
// normal `swift build` never compiles them: each defines only `LLVMFuzzerTestOneInput` and links
// with `-sanitize=fuzzer`, which provides `main`. Build and run them through
// `tools/fuzz NAME [SECONDS]` (see docs/reliability.md).
//
// Tools version 5.4 on purpose: from 5.5 SwiftPM links every executable with `main` aliased to a
// `<target>_main` symbol (so tests can link executables), which collides with libFuzzer's `main`.
//
// The library targets are the main package's own sources (Sources/X are symlinks to ../Sources/X),
// so the harnesses test exactly the shipped code, instrumented for coverage, without adding
// products to the main package.
import PackageDescription

let package = Package(
    name: "lnrr-fuzz",
    dependencies: [
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
    ],
    targets: [
        .systemLibrary(name: "CSecp256k1", pkgConfig: "libsecp256k1", providers: [.apt(["libsecp256k1-dev", "pkg-config"])]),
        .systemLibrary(name: "CSodium", pkgConfig: "libsodium", providers: [.apt(["libsodium-dev", "pkg-config"])]),
        .target(name: "LNTransport", dependencies: ["CSecp256k1", "CSodium"]),
        .target(name: "LNWire", dependencies: ["CSodium"]),
        .target(name: "LNRecording", dependencies: ["LNWire"]),
        .target(name: "LNRules", dependencies: ["LNWire", .product(name: "Yams", package: "Yams")]),

        // One executable per harness, built with -parse-as-library: libFuzzer's main calls it.
        .executableTarget(name: "FuzzBOLT8", dependencies: ["LNTransport"]),
        .executableTarget(name: "FuzzWire", dependencies: ["LNWire"]),
        .executableTarget(name: "FuzzRecording", dependencies: ["LNRecording"]),
        .executableTarget(name: "FuzzRules", dependencies: ["LNRules"]),
        .executableTarget(name: "FuzzJSON", dependencies: ["LNWire"]),
    ]
)
