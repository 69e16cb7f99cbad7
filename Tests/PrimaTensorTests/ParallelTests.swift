import Foundation
import PrimaKernels
import Testing

/// The thread pool of parallel.c: every index runs exactly once, from one caller, from several callers at once, and
/// from inside a task (where the inner loop runs on the calling thread).
@Suite struct ParallelTests {
    /// Counts per index, incremented by the tasks.
    final class Counts: @unchecked Sendable {
        let values: UnsafeMutablePointer<Int64>
        let count: Int
        init(_ count: Int) {
            self.count = count
            values = .allocate(capacity: count)
            values.initialize(repeating: 0, count: count)
        }
        deinit { values.deallocate() }
        var all: [Int64] { Array(UnsafeBufferPointer(start: values, count: count)) }
    }

    /// counts.values[i] += 1 for every index, through prima_parallel_for.
    static func run(_ counts: Counts) {
        prima_parallel_for(Int64(counts.count), { context, index in
            let counts = Unmanaged<Counts>.fromOpaque(context!).takeUnretainedValue()
            counts.values[Int(index)] += 1
        }, Unmanaged.passUnretained(counts).toOpaque())
    }

    /// A loop of 4 tasks that each run a loop of 16; counts the outer tasks whose inner loop ran every index once.
    static func nested() -> Counts {
        let outer = Counts(4)
        prima_parallel_for(4, { context, index in
            let outer = Unmanaged<Counts>.fromOpaque(context!).takeUnretainedValue()
            let inner = Counts(16)
            ParallelTests.run(inner)
            if inner.all.allSatisfy({ $0 == 1 }) { outer.values[Int(index)] += 1 }
        }, Unmanaged.passUnretained(outer).toOpaque())
        return outer
    }

    @Test func everyIndexOnce() {
        for count in [0, 1, 2, 3, 100, 10_000] {
            let counts = Counts(count)
            Self.run(counts)
            #expect(counts.all.allSatisfy { $0 == 1 }, "count \(count)")
        }
    }

    @Test func concurrentAndNestedCallers() {
        DispatchQueue.concurrentPerform(iterations: 8) { caller in
            for round in 0..<50 {
                let counts = round % 10 == 0 ? Self.nested() : Counts(37 + caller + round)
                if round % 10 != 0 { Self.run(counts) }
                #expect(counts.all.allSatisfy { $0 == 1 }, "caller \(caller) round \(round)")
            }
        }
    }
}
