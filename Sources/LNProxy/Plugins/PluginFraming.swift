import NIOCore

/// Splits a plugin's stdout into whole JSON objects, as lightningd reads it: objects may be
/// separated by any whitespace (pyln-client writes a blank line after each); anything else between
/// objects is garbage and fails the stream. An object larger than `maxBytes` fails it too, so a
/// plugin cannot make lnrr buffer without bound.
///
/// The scan only tracks string and nesting state; `JSONValue.parse` (with its depth limit) parses
/// the object afterwards. The scan resumes where it stopped, so a large object arriving in many
/// reads is scanned once.
struct JSONObjectFramer: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    let maxBytes: Int
    /// Bytes of the current object already scanned, and the scanner's state there.
    private var scanned = 0
    private var depth = 0
    private var inString = false
    private var escaped = false

    init(maxBytes: Int) {
        self.maxBytes = maxBytes
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        // Whitespace between objects.
        if scanned == 0 {
            while let byte = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self), byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 {
                buffer.moveReaderIndex(forwardBy: 1)
            }
            guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return .needMoreData }
            guard first == UInt8(ascii: "{") else {
                let shown = String(decoding: buffer.readableBytesView.prefix(80), as: UTF8.self)
                throw PluginFramingError.notJSON(shown)
            }
        }
        var end: Int?
        buffer.withUnsafeReadableBytes { bytes in
            var i = scanned
            while i < bytes.count {
                let c = bytes[i]
                if inString {
                    if escaped { escaped = false } else if c == 0x5C { escaped = true } else if c == 0x22 { inString = false }
                } else if c == 0x22 {
                    inString = true
                } else if c == 0x7B || c == 0x5B {
                    depth += 1
                } else if c == 0x7D || c == 0x5D {
                    depth -= 1
                    if depth == 0 { end = i + 1; break }
                }
                i += 1
            }
            scanned = i
        }
        guard let end else {
            if scanned > maxBytes { throw PluginFramingError.tooLarge(maxBytes) }
            return .needMoreData
        }
        guard end <= maxBytes else { throw PluginFramingError.tooLarge(maxBytes) }
        let object = buffer.readSlice(length: end)!
        scanned = 0
        depth = 0
        context.fireChannelRead(wrapInboundOut(object))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

enum PluginFramingError: Error, CustomStringConvertible {
    case notJSON(String)
    case tooLarge(Int)

    var description: String {
        switch self {
        case .notJSON(let text): return "wrote something that is not a JSON-RPC object: \(text.debugDescription)"
        case .tooLarge(let limit): return "wrote a JSON object larger than \(limit) bytes"
        }
    }
}
