import ArgumentParser
import Foundation
import PrimaCLI
import PrimaCheckpoint
import PrimaIO
import PrimaJSON
import PrimaTensor
import PrimaVerify

/// `prima-verify`: checkpoint integrity, and layer-by-layer numerics against a reference trace.
/// Exit status: 0 pass, 1 any failure, 2 bad usage or bad input.
@main
struct PrimaVerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prima-verify",
        abstract: "Check a PRIMA checkpoint's integrity, or its numerics against a reference trace.",
        discussion: """
            Without --trace: format version, every tensor the architecture needs (shape, dtype), CRC-32 checksums, \
            no NaN/Inf; one verdict line per component. With --trace REF.h5 (Formats/prima-trace.md): runs the \
            trace's component on its inputs and compares every activation in order (NaN/Inf, max_abs, max_rel, \
            cosine, NMSE; tolerances in Formats/prima-verify.md). Exit status: 0 pass, 1 failure, 2 bad usage or input.
            """,
        version: CheckpointFormat.tool)

    static func main() { ToolMain.run(self, name: "prima-verify") }

    @Argument(help: "The checkpoint (.h5).")
    var checkpoint: String?

    @Option(help: "A reference trace to compare against.")
    var trace: String?

    @Option(help: "Another checkpoint (e.g. the fp32 source of an int8 one) to compare against, layer by layer.")
    var against: String?

    @Option(help: "With --against: the component to compare (image_encoder, text_encoder or decoder).")
    var component: String?

    @Option(name: .customLong("min-final-cosine"), parsing: .unconditional, help: "With --against: minimum cosine of the final hidden state.")
    var minFinalCosine = AgainstVerifier.Gates.int8.finalCosine

    @Option(name: .customLong("max-kl"), parsing: .unconditional, help: "With --against, decoders: maximum mean KL of next-token distributions.")
    var maxKL = AgainstVerifier.Gates.int8.meanKL

    @Option(name: .customLong("min-top1"), parsing: .unconditional, help: "With --against, decoders: minimum top-1 agreement.")
    var minTop1 = AgainstVerifier.Gates.int8.top1Agreement

    @Flag(help: "Print one JSON object.")
    var json = false

    @Option(name: .customLong("repeat"), parsing: .unconditional, help: "Timed forward passes (the median is reported); with a trace of inputs only, the run is a timing run.")
    var repeatCount: Int?

    /// Forward passes to time.
    private var repeats: Int { repeatCount ?? 1 }

    @Option(help: "Write the runtime's own trace for the trace's inputs (a new file; see --force).")
    var dump: String?

    @OptionGroup var overwrite: OverwriteOptions

    @Option(name: .customLong("atol-scale"), parsing: .unconditional, help: "Max absolute error, as a multiple of (1 + max |reference|).")
    var atolScale = Tolerances.fp32.absoluteScale

    @Option(name: .customLong("max-rel"), parsing: .unconditional, help: "Max relative error (max_abs / max |reference|).")
    var maxRel = Tolerances.fp32.relative

    @Option(name: .customLong("min-cosine"), parsing: .unconditional, help: "Minimum cosine similarity.")
    var minCosine = Tolerances.fp32.cosine

    @Option(name: .customLong("max-nmse"), parsing: .unconditional, help: "Max normalised mean squared error.")
    var maxNMSE = Tolerances.fp32.nmse

    @Flag(name: .customLong("system-info"), help: "Print the BLAS library and kernels in use, then exit.")
    var systemInfo = false

    func validate() throws {
        if systemInfo { return }
        guard checkpoint != nil else { throw ValidationError("missing the checkpoint argument") }
        guard repeatCount.map({ (1...FlagLimits.maxRepeats).contains($0) }) ?? true else {
            throw ValidationError("--repeat must be in 1...\(FlagLimits.maxRepeats)")
        }
        if dump != nil && (trace == nil || against != nil) {
            throw ValidationError("--dump needs --trace, without --against (it writes the runtime's trace of the trace's inputs)")
        }
        if overwrite.force && dump == nil { throw ValidationError("--force goes with --dump") }
        if let component, ComponentRole(rawValue: component) == nil {
            throw ValidationError("--component must be image_encoder, text_encoder or decoder, not \"\(component)\"")
        }
        if component != nil && against == nil { throw ValidationError("--component goes with --against") }
        // A NaN threshold compares false both ways and would let anything pass: every threshold is finite and in range.
        let thresholds: [(flag: String, value: Double, range: ClosedRange<Double>)] = [
            ("--atol-scale", atolScale, 0...Double.greatestFiniteMagnitude), ("--max-rel", maxRel, 0...Double.greatestFiniteMagnitude),
            ("--min-cosine", minCosine, -1...1), ("--max-nmse", maxNMSE, 0...Double.greatestFiniteMagnitude),
            ("--min-final-cosine", minFinalCosine, -1...1), ("--max-kl", maxKL, 0...Double.greatestFiniteMagnitude),
            ("--min-top1", minTop1, 0...1),
        ]
        for threshold in thresholds where !threshold.range.contains(threshold.value) {
            throw ValidationError("\(threshold.flag) must be a finite number in [\(threshold.range.lowerBound), "
                                  + (threshold.range.upperBound == 1 ? "1" : "∞") + "], not \(threshold.value)")
        }
    }

    func run() throws {
        if systemInfo {
            let info = BLAS.info
            print("openblas core: \(info.coreName)")
            print("openblas config: \(info.config)")
            print("openblas threads: \(info.threads)")
            print("OPENBLAS_CORETYPE: " + (info.presetCoreType.map { "\($0) (set before start, respected)" }
                                           ?? info.chosenCoreType.map { "\($0) (chosen from the CPU's features)" } ?? "unset"))
            print("f32 kernels: \(FloatISA.best.rawValue)" + (FloatISA.best == FloatISA.fastest ? "" : " (PRIMA_FLOAT_KERNEL; fastest here: \(FloatISA.fastest.rawValue))"))
            print("int8 kernel: " + ((try? Int8Kernel.selected).map { $0.rawValue + ($0 == Int8Kernel.best ? "" : " (PRIMA_INT8_KERNEL; fastest here: \(Int8Kernel.best.rawValue))") }
                                     ?? "PRIMA_INT8_KERNEL=\(ProcessInfo.processInfo.environment["PRIMA_INT8_KERNEL"] ?? "") cannot be used"))
            print(String(format: "sgemm peak: %.1f GFLOP/s (best of 5, 2048 x 2048 x 2048)", measureSgemmPeak()))
            return
        }
        let checkpoint = self.checkpoint!
        if let against {
            try verifyAgainst(checkpoint: checkpoint, reference: against)
        } else if let trace {
            try verifyTrace(checkpoint: checkpoint, tracePath: trace)
        } else {
            try verifyIntegrity(checkpoint)
        }
    }

    private func verifyIntegrity(_ checkpoint: String) throws {
        let reports = try IntegrityChecker.run(checkpoint: checkpoint)
        if json {
            print(JSONValue.object(JSONObject([
                ("pass", .bool(reports.allSatisfy(\.pass))),
                ("components", .array(reports.map { report in
                    .object(JSONObject([("name", .string(report.name)), ("architecture", .string(report.architecture)),
                                        ("tensors", .int(report.tensorCount)), ("bytes", .int(report.bytes)),
                                        ("pass", .bool(report.pass)), ("problems", .array(report.problems.map { .string($0) }))]))
                })),
            ])).serialized())
        } else {
            for report in reports {
                if report.pass {
                    print("\(ToolMain.oneLine(report.name)): \(ToolMain.oneLine(report.architecture)), \(report.tensorCount) tensors, \(report.bytes) bytes: OK (config, shapes, tied, files, checksums, finite)")
                } else {
                    print("\(ToolMain.oneLine(report.name)): \(ToolMain.oneLine(report.architecture)): FAILED, \(report.problems.count) problem(s)")
                    for problem in report.problems { print("  \(ToolMain.oneLine(problem))") }
                }
            }
        }
        if !reports.allSatisfy(\.pass) { throw ExitCode(1) }
    }

    private func verifyTrace(checkpoint: String, tracePath: String) throws {
        if try GradientTrace.isGradientTrace(path: tracePath) { return try verifyGradients(checkpoint: checkpoint, tracePath: tracePath) }
        let trace = try Trace(path: tracePath)
        if let dump {
            // Refuse the dump's destination before the run: an existing file without --force, and always an input.
            try InputFile.check(checkpoint)
            try OutputTarget.check(destination: dump, kind: .file, overwrite: overwrite.force)
        }
        let tolerances = Tolerances(absoluteScale: atolScale, relative: maxRel, cosine: minCosine, nmse: maxNMSE)
        // A trace of inputs only compares nothing: it is a timing run when --repeat asks for one, and otherwise a
        // verification that cannot pass.
        let timingOnly = trace.activations.isEmpty
        if timingOnly && repeatCount == nil {
            throw ToolError.input("\(tracePath): the trace has no activations to compare (give --repeat N to time a trace of inputs only)")
        }
        let report = try TraceVerifier.run(checkpoint: checkpoint, trace: trace, tolerances: tolerances, repeats: repeats)
        if let dump { try report.ours.write(to: dump, source: (checkpoint as NSString).lastPathComponent, overwrite: overwrite.force) }
        if json {
            print(JSONValue.object(JSONObject([
                ("pass", timingOnly ? .null : .bool(report.pass)), ("component", .string(report.component)),
                ("timing_only", .bool(timingOnly)), ("load_seconds", .double(report.loadSeconds)), ("forward_seconds", .double(report.forwardSeconds)),
                ("forward_runs", .array(report.forwardRuns.map { .double($0) })),
                ("blas_core", .string(BLAS.info.coreName)), ("blas_threads", .int(BLAS.info.threads)),
                ("first_failure", report.firstFailure.map { .string($0.name) } ?? .null),
                ("activations", .array(report.activations.map(activationJSON))),
            ])).serialized())
        } else {
            print("\(report.component) against \(tracePath): load \(String(format: "%.3f", report.loadSeconds)) s, forward \(String(format: "%.4f", report.forwardSeconds)) s (median of \(report.forwardRuns.count)), BLAS \(BLAS.info.coreName)")
            printTable(report.activations)
            print(timingOnly ? "TIMED (the trace holds inputs only: nothing compared)" : report.pass ? "PASS" : "FAIL")
        }
        if !report.pass { throw ExitCode(1) }
    }

    /// `--trace` with a gradient trace (Formats/prima-trace.md §11): the loss, every activation gradient, every
    /// parameter gradient, with the gradient tolerances (Tolerances.gradients).
    private func verifyGradients(checkpoint: String, tracePath: String) throws {
        if dump != nil { throw ToolError.input("--dump writes forward traces; \(tracePath) is a gradient trace") }
        let trace = try GradientTrace(path: tracePath)
        let report = try GradientVerifier.run(checkpoint: checkpoint, trace: trace, repeats: repeats)
        let loss = JSONValue.object(JSONObject([("ours", .double(Double(report.loss))), ("reference", .double(Double(report.referenceLoss))),
                                                ("relative_error", number(report.lossRelativeError)), ("pass", .bool(report.lossPasses))]))
        if json {
            print(JSONValue.object(JSONObject([
                ("pass", .bool(report.pass)), ("component", .string(report.component)), ("objective", .string(report.objective.rawValue)),
                ("step_seconds", .double(report.stepSeconds)), ("step_runs", .array(report.stepRuns.map { .double($0) })),
                ("loss", loss), ("activations", .array(report.activationGradients.map(activationJSON))),
                ("gradients", .array(report.gradients.map(activationJSON))),
            ] + (report.terms.isEmpty ? [] : [("loss_terms", .array(report.terms.map { term in
                .object(JSONObject([("name", .string(term.name)), ("ours", .double(Double(term.ours))), ("reference", .double(Double(term.reference))),
                                    ("relative_error", number(term.relativeError)), ("pass", .bool(term.pass))]))
            }))]))).serialized())
        } else {
            print("\(report.component) (\(report.objective.rawValue)) against \(tracePath): forward + backward \(String(format: "%.4f", report.stepSeconds)) s (median of \(report.stepRuns.count)), BLAS \(BLAS.info.coreName)")
            print(String(format: "loss %.8g, reference %.8g, relative error %.3e: ", report.loss, report.referenceLoss, report.lossRelativeError)
                  + (report.lossPasses ? "ok" : "FAIL (> \(Tolerances.lossRelative))"))
            for term in report.terms {
                print("  term \(term.name) " + String(format: "%.8g, reference %.8g, relative error %.3e: ", term.ours, term.reference, term.relativeError)
                      + (term.pass ? "ok" : "FAIL"))
            }
            printTable(report.activationGradients, heading: "activation grad")
            printTable(report.gradients, heading: "parameter grad")
            print(report.pass ? "PASS" : "FAIL")
        }
        if !report.pass { throw ExitCode(1) }
    }

    private func verifyAgainst(checkpoint: String, reference: String) throws {
        let traceFile = try trace.map { try Trace(path: $0) }
        let tolerances = Tolerances(absoluteScale: atolScale, relative: maxRel, cosine: minCosine, nmse: maxNMSE)
        let gates = AgainstVerifier.Gates(finalCosine: minFinalCosine, meanKL: maxKL, top1Agreement: minTop1)
        let report = try AgainstVerifier.run(checkpoint: checkpoint, against: reference,
                                             component: component.flatMap(ComponentRole.init(rawValue:)),
                                             trace: traceFile, tolerances: tolerances, gates: gates, repeats: repeats)
        if json {
            print(JSONValue.object(JSONObject([
                ("pass", .bool(report.pass)), ("component", .string(report.component.rawValue)),
                ("forward_seconds", .double(report.oursForwardSeconds)),
                ("against_forward_seconds", .double(report.referenceForwardSeconds)),
                ("final_cosine", number(report.finalCosine)),
                ("mean_kl", report.meanKL.map { number($0) } ?? .null),
                ("top1_agreement", report.top1Agreement.map { number($0) } ?? .null),
                ("gate_failures", .array(report.gateFailures.map { .string($0) })),
                ("activations", .array(report.activations.map(activationJSON))),
            ])).serialized())
        } else {
            print("\(report.component.rawValue): \(checkpoint) against \(reference): forward \(String(format: "%.4f", report.oursForwardSeconds)) s vs \(String(format: "%.4f", report.referenceForwardSeconds)) s")
            printTable(report.activations)
            var gateLine = String(format: "final_norm cosine %.6f (gate >= %g)", report.finalCosine, minFinalCosine)
            if let kl = report.meanKL, let top1 = report.top1Agreement {
                gateLine += String(format: "; mean KL %.3e (gate <= %g); top-1 agreement %.4f (gate >= %g)", kl, maxKL, top1, minTop1)
            }
            print(gateLine)
            for failure in report.gateFailures { print("gate failed: \(failure)") }
            print(report.pass ? "PASS" : "FAIL")
        }
        if !report.pass { throw ExitCode(1) }
    }

    /// One activation's comparison as JSON.
    private func activationJSON(_ item: ActivationComparison) -> JSONValue {
        .object(JSONObject([("name", .string(item.name)), ("max_abs", number(item.maxAbs)),
                            ("max_rel", number(item.maxRel)), ("cosine", number(item.cosine)),
                            ("nmse", number(item.nmse)), ("non_finite", .int(item.nonFinite)),
                            ("pass", .bool(item.pass)), ("failure", item.failure.map { .string($0) } ?? .null)]))
    }

    /// The per-activation table, marking the first failure.
    private func printTable(_ activations: [ActivationComparison], heading: String = "activation") {
        let width = max(14, heading.count, activations.map(\.name.count).max() ?? 0)
        print(heading.padding(toLength: width, withPad: " ", startingAt: 0) + "     max_abs     max_rel      cosine        nmse  verdict")
        let first = activations.first { !$0.pass }?.name
        for item in activations {
            let verdict = item.pass ? "ok" : "FAIL" + (item.name == first ? " <- first failure: \(item.failure ?? "")" : "")
            print(item.name.padding(toLength: width, withPad: " ", startingAt: 0)
                  + String(format: "  %10.3e  %10.3e  %10.8f  %10.3e  ", item.maxAbs, item.maxRel, item.cosine, item.nmse) + verdict)
        }
    }

    /// The best sgemm throughput of five 2048³ products, in GFLOP/s: the peak the runtime's kernels can reach.
    private func measureSgemmPeak() -> Double {
        let n = 2048
        let a = Tensor(shape: [n, n], float32: (0..<(n * n)).map { Float($0 % 7) * 0.01 })
        let c = Tensor(zeros: [n, n], dtype: .f32)
        var best = Double.infinity
        a.withFloat32 { x in c.withMutableFloat32 { y in
            for _ in 0..<5 {
                let start = Date()
                BLAS.sgemm(m: n, n: n, k: n, a: x.baseAddress!, lda: n, b: x.baseAddress!, ldb: n, c: y.baseAddress!, ldc: n)
                best = min(best, Date().timeIntervalSince(start))
            }
        } }
        return 2 * Double(n * n * n) / best / 1e9
    }

    /// A JSON number, with non-finite values as null (JSON has no NaN or infinity).
    private func number(_ value: Double) -> JSONValue { value.isFinite ? .double(value) : .null }
}

