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
// The harnesses depend on the main package by path, so they test exactly the shipped code,
// instrumented for coverage.
import PackageDescription

let package = Package(
    name: "lnrr-fuzz",
    dependencies: [
        .package(name: "lnrr", path: ".."),
    ],
    targets: [
        // One executable per harness, built with -parse-as-library: libFuzzer's main calls it.
        .executableTarget(name: "FuzzBOLT8", dependencies: [.product(name: "LNTransport", package: "lnrr")]),
        .executableTarget(name: "FuzzWire", dependencies: [.product(name: "LNWire", package: "lnrr")]),
        .executableTarget(name: "FuzzRecording", dependencies: [.product(name: "LNRecording", package: "lnrr")]),
        .executableTarget(name: "FuzzRules", dependencies: [.product(name: "LNRules", package: "lnrr")]),
        .executableTarget(name: "FuzzJSON", dependencies: [.product(name: "LNWire", package: "lnrr")]),
    ]
)
