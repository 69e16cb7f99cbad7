import ArgumentParser
import Foundation
import PrimaCheckpoint
import PrimaIO
import PrimaTensor

/// An error that carries the process exit status a tool should end with (2: bad input or usage, 1: failed job).
public protocol ToolFailure: Error, CustomStringConvertible {
    var exitCode: Int32 { get }
}

extension ToolError: ToolFailure {}

/// The common `main` of the prima tools: parse, run, print any error as one line `TOOL: error: …` on stderr,
/// and exit with the toolkit's status codes (0 success, 1 the job or check failed, 2 bad usage or bad input).
/// Interrupting (SIGINT/SIGTERM) removes temporary outputs. Every HDF5 input is walked in a child process first
/// (``HDF5Probe``), so that libhdf5 crashing on corrupted metadata is an error line, not a crash.
public enum ToolMain {
    /// `gracefulStop`: the first SIGINT/SIGTERM only sets `TemporaryFiles.stopRequested` (a training run saves
    /// and stops); a second one interrupts as for every tool.
    public static func run<Command: ParsableCommand>(_ command: Command.Type, name: String, gracefulStop: Bool = false) -> Never {
        HDF5Probe.startTool()  // first: a probe child of this tool walks its file and exits here
        TemporaryFiles.installSignalHandlers(graceful: gracefulStop)
        OutputTarget.warn = { printWarning(name, $0) }
        if let problem = FloatISA.environmentProblem {
            printError(name, problem)
            exit(2)
        }
        do {
            var parsed = try command.parseAsRoot()
            try parsed.run()
            exit(0)
        } catch let failure as ToolFailure {
            printError(name, failure.description)
            exit(failure.exitCode)
        } catch let exitCode as ExitCode {
            exit(exitCode.rawValue)
        } catch {
            if command.exitCode(for: error) == .success {
                print(command.fullMessage(for: error))
                exit(0)
            }
            // One line, like every other error: ArgumentParser's message without its usage block, pointing at --help.
            var message = command.message(for: error)
            if message.hasPrefix("Error: ") { message.removeFirst("Error: ".count) }  // already said by "error:"
            FileHandle.standardError.write(Data("\(name): error: \(oneLine(message)) (see \(name) --help)\n".utf8))
            exit(2)
        }
    }

    /// Prints `TOOL: error: message` on stderr, as one line (see ``oneLine(_:)``).
    public static func printError(_ name: String, _ message: String) {
        FileHandle.standardError.write(Data("\(name): error: \(oneLine(message))\n".utf8))
    }

    /// Prints `TOOL: warning: message` on stderr, as one line (see ``oneLine(_:)``).
    public static func printWarning(_ name: String, _ message: String) {
        FileHandle.standardError.write(Data("\(name): warning: \(oneLine(message))\n".utf8))
    }

    /// `message` made safe for a terminal and kept to one line (``Terminal/escaped(_:keepNewlines:)``). A message
    /// that ArgumentParser formats over several lines (usage help after an error) keeps its line breaks only when
    /// `keepNewlines` is true.
    public static func oneLine(_ message: String, keepNewlines: Bool = false) -> String {
        Terminal.escaped(message, keepNewlines: keepNewlines)
    }
}
