import Foundation

/// Wall-clock time in nanoseconds since the Unix epoch: the timestamps recordings carry.
@inline(__always)
func wallClockNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}
