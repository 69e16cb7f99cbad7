import ArgumentParser
import Foundation
import PrimaCLI
import PrimaCohort
import PrimaIO

/// `prima-cohort`: a seeded synthetic cohort in PAD-UFES-20's layout (Docs/cohort.md).
/// Exit status: 0 success, 1 the run failed, 2 bad usage or bad input.
@main
struct PrimaCohortCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prima-cohort",
        abstract: "Generate a synthetic PAD-UFES-20-shaped cohort: metadata.csv, lesion images and a risk-factor corpus.",
        discussion: """
            Writes DIR/metadata.csv (PAD-UFES-20's 26 columns), DIR/imgs_part_*/PAT_<patient>_<lesion>_<image>.png, \
            DIR/risk-factors.jsonl (an illustrative stage-1 corpus, not physician-vetted) and DIR/README.txt. The \
            data are synthetic, not real patients. The class balance is PAD-UFES-20's scaled to --cases; the same \
            options give byte-identical files. Exit status: 0 success, 1 the run failed, 2 bad usage or bad input. \
            The model: Docs/cohort.md.
            """,
        version: "prima-cohort \(CohortWriter.version)")

    @Option(name: .shortAndLong, help: ArgumentHelp("The folder to write (absent or empty, or --force).", valueName: "DIR"))
    var output: String

    @Option(help: "Number of images (metadata.csv rows); PAD-UFES-20 has 2298.")
    var cases = PadUfes20.images

    @Option(name: .customLong("image-size"), help: "Side of the square images, in pixels.")
    var imageSize = 224

    @Option(help: "The seed of every random draw.")
    var seed: UInt64 = 0

    @OptionGroup var overwrite: OverwriteOptions
    @OptionGroup var progress: ProgressOptions

    static func main() { ToolMain.run(self, name: "prima-cohort") }

    func validate() throws {
        guard (1...CohortOptions.maxCases).contains(cases) else { throw ValidationError("--cases must be in 1...\(CohortOptions.maxCases)") }
        guard CohortOptions.imageSizes.contains(imageSize) else {
            throw ValidationError("--image-size must be in \(CohortOptions.imageSizes.lowerBound)...\(CohortOptions.imageSizes.upperBound)")
        }
    }

    func run() throws {
        try OutputTarget.check(destination: output, kind: .directory, overwrite: overwrite.force)
        let start = Date()
        let cohort = Cohort(options: CohortOptions(cases: cases, imageSize: imageSize, seed: seed))
        let bar = Progress(label: "cohort", total: cohort.images.count, unit: .items("images"), enabled: progress.showProgress)
        try CohortWriter.write(cohort, to: output, overwrite: overwrite.force) { _ in bar.advance(1) }
        bar.finish()
        let counts = Cohort.classCounts(cases: cases)
        let classes = Diagnosis.allCases.map { "\($0.code) \(counts[$0]!)" }.joined(separator: ", ")
        print("\(output): \(cohort.images.count) synthetic images (\(classes)) of \(cohort.lesions.count) lesions, "
              + "\(cohort.patients.count) patients, \(imageSize) px, seed \(seed), in "
              + String(format: "%.1f s", Date().timeIntervalSince(start)))
    }
}
