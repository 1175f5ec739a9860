/// What `PhaseTracker.observe(_:direction:)` made of one message.
public struct PhaseObservation: Sendable, Hashable {
    /// The channel the message belongs to, under its final id when known (so `funding_created`,
    /// which carries the temporary id, is reported under the id it creates); `nil` for
    /// connection-level messages.
    public var channel: ChannelID?
    /// The phase of the channel (or, for connection-level messages, of the connection) before the
    /// message. A channel first seen through this message counts as being in the connection's
    /// phase before it.
    public var before: ChannelPhase
    /// The phase after the message.
    public var after: ChannelPhase
    /// What the message changed; empty (and not allocated) for the vast majority of messages.
    public var changes: [PhaseChange]

    /// The phase the message belongs to: ``after``, so a message that hands the channel over (such
    /// as `channel_ready` or the first `closing_signed`) counts in the phase it starts, while
    /// ``before`` tells who was in charge when it arrived.
    public var phase: ChannelPhase { after }

    /// Makes an observation; the tracker is the usual source, this is for tests and replays.
    public init(channel: ChannelID?, before: ChannelPhase, after: ChannelPhase, changes: [PhaseChange]) {
        self.channel = channel
        self.before = before
        self.after = after
        self.changes = changes
    }
}

/// One change made by a message: a channel (or the connection) moving between phases, appearing,
/// or being renamed from its `temporary_channel_id` to its final `channel_id`.
public struct PhaseChange: Sendable, Hashable, CustomStringConvertible {
    /// The channel (its final id if renamed by this change), or `nil` for the connection itself.
    public var channel: ChannelID?
    /// The phase before the message (the connection's phase for a new channel).
    public var from: ChannelPhase
    /// The phase after the message; equal to ``from`` for a change that only renames or adds.
    public var to: ChannelPhase
    /// The `temporary_channel_id` the channel was known by until this message; whatever was
    /// attributed to it before belongs to ``channel`` from now on.
    public var renamedFrom: ChannelID?
    /// Whether the channel was first seen through this message; ``from`` is then the connection's
    /// phase.
    public var isNewChannel: Bool

    /// Makes a change record; the tracker is the usual source, this is for tests and replays.
    public init(
        channel: ChannelID?, from: ChannelPhase, to: ChannelPhase, renamedFrom: ChannelID? = nil,
        isNewChannel: Bool = false
    ) {
        self.channel = channel
        self.from = from
        self.to = to
        self.renamedFrom = renamedFrom
        self.isNewChannel = isNewChannel
    }

    /// For logs, e.g. `6a0e..12bd: opening -> channel`, `6a0e..12bd (was 1111..2222): opening`,
    /// `1111..2222 (new): opening`, `connection: init -> opening`.
    public var description: String {
        var subject = channel.map(\.shortHex) ?? "connection"
        if let renamedFrom { subject += " (was \(renamedFrom.shortHex))" }
        if isNewChannel { subject += " (new)" }
        return from == to ? "\(subject): \(to)" : "\(subject): \(from) -> \(to)"
    }
}
