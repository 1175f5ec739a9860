/// A first-in first-out queue with O(1) push, pop and put-back at the front, and no per-element
/// allocation once warm: the one ordering mechanism of a relay direction.
struct HeldQueue<Element> {
    private var storage: [Element?] = []
    private var head = 0

    var isEmpty: Bool { head == storage.count }
    var count: Int { storage.count - head }
    var first: Element? { isEmpty ? nil : storage[head] }

    mutating func append(_ element: Element) { storage.append(element) }

    mutating func popFirst() -> Element? {
        guard !isEmpty else { return nil }
        let element = storage[head]
        storage[head] = nil
        head += 1
        if head == storage.count {
            storage.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 64 && head * 2 >= storage.count {
            storage.removeFirst(head)
            head = 0
        }
        return element
    }

    /// Puts `elements` back at the front, in order (a hook's verdict turns into these).
    mutating func prepend(_ elements: [Element]) {
        guard !elements.isEmpty else { return }
        if head >= elements.count {
            head -= elements.count
            for (i, e) in elements.enumerated() { storage[head + i] = e }
        } else {
            storage.replaceSubrange(head..<head, with: elements.map { Optional($0) })
        }
    }

    /// Changes the first element that matches, in place; false when none does.
    mutating func updateFirst(where matches: (Element) -> Bool, _ update: (inout Element) -> Void) -> Bool {
        for i in head..<storage.count where matches(storage[i]!) {
            update(&storage[i]!)
            return true
        }
        return false
    }

    mutating func removeAll() {
        storage.removeAll(keepingCapacity: true)
        head = 0
    }
}
