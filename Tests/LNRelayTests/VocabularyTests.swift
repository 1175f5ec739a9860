import Foundation
import LNRecording
import Testing

@Suite("recording vocabulary")
struct VocabularyTests {
    @Test("every session event kind survives the writer's JSON and the reader's parser, and names stay as documented")
    func roundTrip() throws {
        for kind in SessionEventKind.allCases {
            let event = RecordingEvent(kind, fields: ["k": .string("v")])
            let parsed = try #require(RecordingEvent(json: Array(event.json.utf8)))
            #expect(parsed.kind == kind && parsed.fields["k"] == .string("v"))
        }
        // docs/recording-format.md names these; a rename would break every recording already made.
        #expect(SessionEventKind.allCases.map(\.rawValue).sorted()
            == ["backpressure", "close", "fault", "handshake", "hook", "rule-halt", "rules-reloaded", "session-start"])
        #expect(RecordingEvent(name: "from-a-newer-lnrr").kind == nil)
    }
}
