import ArgumentParser

/// The `lnrr` command: every subcommand registers here.
@main
struct LNRR: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lnrr",
        abstract: "Record, steer and replay Lightning Network peer traffic (BOLT 8).",
        discussion: """
            lnrr sits between two Lightning nodes as a man-in-the-middle. It terminates the BOLT 8 \
            handshake on both sides with node keys you hold (you run the test nodes), records every \
            decrypted message, lets rules drop, delay, inject or rewrite messages, and replays \
            recordings against a live node.

            Start with `lnrr demo`, then see `lnrr help record`.
            """,
        version: LNRRVersion.string,
        subcommands: [
            // Subcommands register here, one line each.
        ]
    )
}

enum LNRRVersion {
    static let string = "0.1.0"
}
