import Foundation
import PrimaImage
import PrimaIO

/// Writes a cohort as a PAD-UFES-20-layout folder, through one ``OutputTarget`` (built under a temporary name
/// beside the destination and renamed into place when complete):
///
/// ```
/// DIR/metadata.csv          the 26 columns, one row per image
/// DIR/imgs_part_K/*.png     the images, 1,000 to a folder in row order, named by img_id
/// DIR/risk-factors.jsonl    the stage-1 corpus (prima-train stage 1 --corpus)
/// DIR/README.txt            what the folder is: synthetic, with the generator's version and options
/// ```
public enum CohortWriter {
    /// The generator's version: it changes whenever the same options would give different files.
    public static let version = 1
    /// zlib level of the images: level 1 compresses these noisy drawings about three times faster than the
    /// toolkit's usual 6, for files about 15% larger (Docs/cohort.md, "Timings").
    static let pngLevel = 1
    /// Images per imgs_part_K folder.
    public static let imagesPerPart = 1000

    /// The relative path of the image at `position` (in metadata.csv order).
    public static func imagePath(_ cohort: Cohort, position: Int) -> String {
        "imgs_part_\(position / imagesPerPart + 1)/\(cohort.images[position].imageID)"
    }

    /// Generates and writes `cohort` to `destination` (refused if it exists and is not empty, unless `overwrite`).
    /// `progress` is called with the number of images written so far (from any thread, serialised).
    public static func write(_ cohort: Cohort, to destination: String, overwrite: Bool,
                             progress: @escaping @Sendable (Int) -> Void = { _ in }) throws(ToolError) {
        let target = try OutputTarget(destination: destination, kind: .directory, overwrite: overwrite)
        let staging = target.temporaryPath
        let parts = (cohort.images.count + imagesPerPart - 1) / imagesPerPart
        for part in 1...max(1, parts) {
            let path = staging + "/imgs_part_\(part)"
            guard mkdir(path, 0o777) == 0 else { throw .failed("\(destination): cannot create \(path): \(systemError())") }
        }
        try writeFile(staging + "/metadata.csv", Array(cohort.csvText().utf8), destination: destination)
        try writeFile(staging + "/risk-factors.jsonl", Array(CohortCorpus.jsonlText().utf8), destination: destination)
        try writeFile(staging + "/README.txt", Array(readme(cohort.options).utf8), destination: destination)

        final class Shared: @unchecked Sendable {
            let lock = NSLock()
            var error: ToolError?
            var done = 0
        }
        let shared = Shared()
        let count = cohort.images.count
        let workers = max(1, min(ProcessInfo.processInfo.activeProcessorCount, 16))
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            var position = worker
            while position < count {
                shared.lock.lock()
                let stop = shared.error != nil
                shared.lock.unlock()
                if stop { return }
                let relative = imagePath(cohort, position: position)
                do throws(ToolError) {
                    let image = LesionRenderer.render(cohort, position: position)
                    let bytes: [UInt8]
                    do throws(ImageError) { bytes = try PNGEncoder.encode(image, name: relative, compressionLevel: pngLevel) } catch { throw ToolError.failed(error.description) }
                    try writeFile(staging + "/" + relative, bytes, destination: destination)
                } catch {
                    shared.lock.lock()
                    if shared.error == nil { shared.error = error }
                    shared.lock.unlock()
                    return
                }
                shared.lock.lock()
                shared.done += 1
                progress(shared.done)
                shared.lock.unlock()
                position += workers
            }
        }
        if let error = shared.error { throw error }
        try target.commit()
    }

    /// Writes `bytes` to a new file at `path` (exclusive), synced, with the mode a committed output gets.
    static func writeFile(_ path: String, _ bytes: [UInt8], destination: String) throws(ToolError) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, OutputTarget.fileMode)
        guard descriptor >= 0 else { throw .failed("\(destination): cannot create \(path): \(systemError())") }
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Foundation.write(descriptor, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else {
                let reason = systemError()
                close(descriptor)
                throw .failed("\(destination): cannot write \(path): \(reason)")
            }
            offset += written
        }
        guard fsync(descriptor) == 0 else {
            let reason = systemError()
            close(descriptor)
            throw .failed("\(destination): cannot sync \(path): \(reason)")
        }
        guard close(descriptor) == 0 else { throw .failed("\(destination): cannot close \(path): \(systemError())") }
    }

    /// README.txt: says plainly what the folder is.
    public static func readme(_ options: CohortOptions) -> String {
        let counts = Cohort.classCounts(cases: options.cases)
        let classes = Diagnosis.allCases.map { "\($0.code) \(counts[$0]!)" }.joined(separator: ", ")
        return """
            SYNTHETIC DATA - NOT REAL PATIENTS

            This folder was generated by prima-cohort (PRIMA toolkit, cohort generator version \(version)) with
                prima-cohort --cases \(options.cases) --image-size \(options.imageSize) --seed \(options.seed)
            The same command gives byte-identical files.

            Every patient, lesion, metadata value and image here is invented by a seeded random generator. Nothing
            comes from a real person. The folder has the layout of the PAD-UFES-20 dataset (metadata.csv with its
            26 columns, images named PAT_<patient>_<lesion>_<image>.png in imgs_part_* folders) so that the toolkit's
            tools can be run end to end without the real data; results on it say nothing about clinical performance.

            Images: \(options.cases) (\(classes)), \(options.imageSize)x\(options.imageSize) PNG drawings of a lesion on skin.
            The class-conditional distributions of the metadata and the image model are described in the toolkit's
            Docs/cohort.md; their shapes follow general dermatology knowledge, their exact numbers are illustrative.

            risk-factors.jsonl is a stage-1 knowledge corpus (one JSON object per risk factor: name, summary,
            details) written for this project. It is ILLUSTRATIVE and NOT vetted by a physician: do not use it as
            medical information.

            """
    }
}

/// `strerror(errno)` as a Swift string.
func systemError(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }
