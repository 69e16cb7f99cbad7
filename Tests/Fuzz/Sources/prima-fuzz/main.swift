import Foundation
import PrimaCheckpoint
import PrimaFuzzTargets

// The libFuzzer driver. SwiftPM links an executable target's entry point as `<module>_main`, so the driver is
// started from there with LLVMFuzzerRunDriver (libFuzzer's own `main` is not linked). The target comes from
// PRIMA_FUZZ_TARGET (a FuzzTarget raw value). Crashes, traps, memory errors, time-outs and an empty error message
// are reported. (A message may quote hostile names with line breaks: the tools escape them when printing.)

nonisolated(unsafe) private var target = FuzzTarget.json
nonisolated(unsafe) private var scratch = NSTemporaryDirectory()

@_silgen_name("LLVMFuzzerRunDriver")
private func runDriver(_ argc: UnsafeMutablePointer<Int32>,
                       _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                       _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

@_cdecl("prima_fuzz_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    // As in every tool: HDF5 inputs are walked in a probe child (this executable re-run) before libhdf5 reads them
    // in-process; in the child this walks the file and exits.
    HDF5Probe.startTool()
    let environment = ProcessInfo.processInfo.environment
    guard let name = environment["PRIMA_FUZZ_TARGET"], let chosen = FuzzTarget(rawValue: name) else {
        let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
        FileHandle.standardError.write(Data("prima-fuzz: set PRIMA_FUZZ_TARGET to one of: \(names)\n".utf8))
        return 2
    }
    target = chosen
    if let directory = environment["PRIMA_FUZZ_SCRATCH"] { scratch = directory }
    var count = argc
    var arguments = argv
    return runDriver(&count, &arguments) { data, size in
        let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
        if case .refused(let message) = target.run(bytes, scratch: scratch), message.isEmpty {
            fatalError("\(target.rawValue): refused without a message")
        }
        return 0
    }
}
