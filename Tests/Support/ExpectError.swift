import Testing

/// Expects `body` to throw a one-line error whose description contains every fragment.
public func expectError(_ fragments: String..., sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("accepted input that should fail with \(fragments)", sourceLocation: sourceLocation)
    } catch {
        let message = "\(error)"
        #expect(!message.contains("\n"), "multi-line error: \(message)", sourceLocation: sourceLocation)
        for fragment in fragments {
            #expect(message.contains(fragment), "\(message) lacks \(fragment)", sourceLocation: sourceLocation)
        }
    }
}
