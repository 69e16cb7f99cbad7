import Foundation
@testable import PrimaIO
import PrimaTestSupport
import Testing

/// The commit rules of ``OutputTarget`` in process, where the races the tools cannot stage on demand can be:
/// a destination that appears between the start and the commit is never clobbered without `overwrite`.
/// The mode a file created in place with 0666 gets under the process's umask (a probe file in `directory`).
func modeOfANewFile(in directory: String) -> mode_t {
    let probe = directory + "/probe"
    let descriptor = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0o666)
    defer { close(descriptor); unlink(probe) }
    var status = stat()
    return fstat(descriptor, &status) == 0 ? status.st_mode & 0o777 : 0
}

@Suite struct OutputTargetTests {
    static func write(_ text: String, _ target: OutputTarget) throws {
        let descriptor = try target.createFile()
        let written = Array(text.utf8).withUnsafeBytes { Foundation.write(descriptor, $0.baseAddress, $0.count) }
        close(descriptor)
        #expect(written == text.utf8.count)
    }

    @Test func fileThatAppearedMeanwhileIsNotClobbered() throws {
        let work = IOSupport.work()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let destination = work + "/out.txt"
        let first = try OutputTarget(destination: destination, kind: .file, overwrite: false)
        let second = try OutputTarget(destination: destination, kind: .file, overwrite: false)
        #expect(first.temporaryPath != second.temporaryPath)
        try Self.write("first", first)
        try Self.write("second", second)
        try first.commit()
        #expect(throws: ToolError.input(destination + ": already exists (use --force to overwrite)")) { try second.commit() }
        #expect(IOSupport.bytes(destination) == Data("first".utf8))
        var status = stat()
        #expect(stat(destination, &status) == 0 && status.st_mode & 0o777 == OutputTarget.fileMode)
        #expect(OutputTarget.fileMode == modeOfANewFile(in: work))

        let forced = try OutputTarget(destination: destination, kind: .file, overwrite: true)
        try Self.write("third", forced)
        try forced.commit()
        #expect(IOSupport.bytes(destination) == Data("third".utf8))
        _ = consume second
        #expect(try FileManager.default.contentsOfDirectory(atPath: work) == ["out.txt"])
    }

    @Test func directoryThatAppearedMeanwhileIsNotClobbered() throws {
        let work = IOSupport.work()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let destination = work + "/out"
        let staged = try OutputTarget(destination: destination, kind: .directory, overwrite: false)
        try Data("new".utf8).write(to: URL(fileURLWithPath: staged.temporaryPath + "/a.json"))
        try FileManager.default.createDirectory(atPath: destination, withIntermediateDirectories: false)
        try Data("theirs".utf8).write(to: URL(fileURLWithPath: destination + "/b.json"))
        #expect(throws: ToolError.self) { try staged.commit() }
        #expect(try FileManager.default.contentsOfDirectory(atPath: destination) == ["b.json"])

        let forced = try OutputTarget(destination: destination, kind: .directory, overwrite: true)
        try Data("new".utf8).write(to: URL(fileURLWithPath: forced.temporaryPath + "/a.json"))
        try forced.commit()
        #expect(try FileManager.default.contentsOfDirectory(atPath: destination) == ["a.json"])
        _ = consume staged
        #expect(try FileManager.default.contentsOfDirectory(atPath: work) == ["out"])
    }

    @Test func temporaryNamesAreRecognised() {
        #expect(OutputTarget.parseTemporaryName(".m.h5.prima-tmp-1234-abcdefghij01")! == ("m.h5", 1234))
        #expect(OutputTarget.parseTemporaryName(".out.prima-tmp-77-abcdefghij01-old")! == ("out", 77))
        #expect(OutputTarget.parseTemporaryName(".a.prima-tmp-b.prima-tmp-5-abcdefghij01")! == ("a.prima-tmp-b", 5))
        for name in ["m.h5.prima-tmp-1234-abcdefghij01", ".m.h5.prima-tmp-x-abcdefghij01", ".m.h5.prima-tmp-1234-ABCDEFGHIJ01",
                     ".m.h5.prima-tmp-1234-short", ".prima-tmp-1234-abcdefghij01", ".m.h5.tmp-1234"] {
            #expect(OutputTarget.parseTemporaryName(name) == nil, "\(name)")
        }
    }

    @Test func destinationsThatAreLoopsOrMissingDirectories() throws {
        let work = IOSupport.work()
        defer { try? FileManager.default.removeItem(atPath: work) }
        IOSupport.symlink(work + "/loop", work + "/loop")
        #expect(throws: ToolError.input(work + "/loop: too many levels of symbolic links (a symbolic link loop?)")) {
            _ = try OutputTarget(destination: work + "/loop", kind: .file, overwrite: true)
        }
        #expect(throws: ToolError.input(work + "/loop/x.h5: " + work + "/loop: too many levels of symbolic links (a symbolic link loop?)")) {
            _ = try OutputTarget(destination: work + "/loop/x.h5", kind: .file, overwrite: true)
        }
        #expect(throws: ToolError.input(work + "/absent/x.h5: directory " + work + "/absent does not exist")) {
            _ = try OutputTarget(destination: work + "/absent/x.h5", kind: .file, overwrite: true)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: work) == ["loop"])
    }
}
