import Foundation
import ArgumentParser

/// The unit a bare number means for one flag, so that `--timeout 500` keeps meaning what it meant
/// before units were accepted.
protocol BareDurationUnit: Sendable {
    /// Nanoseconds in one unit.
    static var nanoseconds: Double { get }
    /// The unit's name in help and errors ("milliseconds").
    static var name: String { get }
    /// Its suffix ("ms").
    static var suffix: String { get }
}

/// A bare number is milliseconds (`--timeout 500` is half a second).
enum Milliseconds: BareDurationUnit {
    static let nanoseconds = 1e6
    static let name = "milliseconds"
    static let suffix = "ms"
}

/// A bare number is seconds (`--idle-timeout 2` is two seconds).
enum Seconds: BareDurationUnit {
    static let nanoseconds = 1e9
    static let name = "seconds"
    static let suffix = "s"
}

/// A duration given on the command line, for every time flag lnrr has: a number with a unit
/// (`250us`, `500ms`, `10s`, `1.5s`, `2m`, `1h`), or a bare number in the flag's own unit `Unit`.
/// Negative, infinite and absurdly long (over a year) values are refused when parsing; whether zero
/// is allowed is the flag's business.
struct DurationArgument<Unit: BareDurationUnit>: ExpressibleByArgument, CustomStringConvertible, Sendable {
    /// Whole nanoseconds, rounded.
    let nanoseconds: UInt64

    /// The units accepted, longest suffix first so that "ms" is not read as "m" followed by "s".
    private static var units: [(suffix: String, nanoseconds: Double)] {
        [("ns", 1), ("us", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3600e9)]
            .sorted { $0.suffix.count > $1.suffix.count }
    }

    init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    /// `value` in the flag's bare unit, as a default written in code.
    init(_ value: Double) { nanoseconds = UInt64((value * Unit.nanoseconds).rounded()) }

    init?(argument: String) {
        let text = argument.trimmingCharacters(in: .whitespaces).lowercased()
        var number = Substring(text), scale = Unit.nanoseconds
        for unit in Self.units where text.hasSuffix(unit.suffix) {
            number = text.dropLast(unit.suffix.count)
            scale = unit.nanoseconds
            break
        }
        // Double(_:) accepts "inf", "nan" and hex floats; a duration is plain digits and one dot.
        guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
              let value = Double(number), value.isFinite else { return nil }
        let nanos = value * scale
        guard nanos < 365 * 24 * 3600e9 else { return nil }
        nanoseconds = UInt64(nanos.rounded())
    }

    var seconds: Double { Double(nanoseconds) / 1e9 }
    var milliseconds: Double { Double(nanoseconds) / 1e6 }

    /// The shortest exact spelling: "10s", "500ms", "1.5s", "2m".
    var description: String {
        if nanoseconds == 0 { return "0\(Unit.suffix)" }
        for (suffix, size) in [("h", 3600e9), ("m", 60e9), ("s", 1e9), ("ms", 1e6), ("us", 1e3)] {
            let value = Double(nanoseconds) / size
            if value >= 1, (value * 1000).rounded() == value * 1000 {
                return Self.trim(value) + suffix
            }
        }
        return "\(nanoseconds)ns"
    }

    var defaultValueDescription: String { description }

    /// What the help of a time flag says about its values.
    static var helpSuffix: String {
        "A duration: 500ms, 10s, 2m, 1.5s; a bare number is \(Unit.name)."
    }

    private static func trim(_ value: Double) -> String {
        var text = String(format: "%.3f", value)
        while text.hasSuffix("0") { text.removeLast() }
        if text.hasSuffix(".") { text.removeLast() }
        return text
    }
}
