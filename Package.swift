// swift-tools-version: 6.0
// The PRIMA toolkit: a documented HDF5 checkpoint format for PRIMA's components, converters to and from
// Hugging Face safetensors, and (in later modules) a CPU runtime over OpenBLAS.
import PackageDescription

/// A system library reached through pkg-config, with its Debian provider named for SwiftPM's hint.
func systemLibrary(_ name: String, pkgConfig: String, apt: String) -> Target {
    .systemLibrary(name: name, path: "Sources/\(name)", pkgConfig: pkgConfig, providers: [.apt([apt])])
}

let package = Package(
    name: "PrimaToolkit",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "prima-convert", targets: ["prima-convert"]),
        .executable(name: "prima-verify", targets: ["prima-verify"]),
        .executable(name: "prima-quantize", targets: ["prima-quantize"]),
        .executable(name: "prima-diagnose", targets: ["prima-diagnose"]),
        .executable(name: "prima-train", targets: ["prima-train"]),
        .executable(name: "prima-cohort", targets: ["prima-cohort"]),
        .executable(name: "prima-eval", targets: ["prima-eval"]),
        .library(name: "PrimaCheckpoint", targets: ["PrimaCheckpoint"]),
        .library(name: "PrimaConvert", targets: ["PrimaConvert"]),
        .library(name: "PrimaQuantize", targets: ["PrimaQuantize"]),
        .library(name: "PrimaImage", targets: ["PrimaImage"]),
        .library(name: "PrimaTokenizers", targets: ["PrimaTokenizers"]),
        .library(name: "PrimaMetadata", targets: ["PrimaMetadata"]),
        .library(name: "PrimaDiagnose", targets: ["PrimaDiagnose"]),
        .library(name: "PrimaTrain", targets: ["PrimaTrain"]),
        .library(name: "PrimaCohort", targets: ["PrimaCohort"]),
        .library(name: "PrimaEval", targets: ["PrimaEval"]),
        .library(name: "PrimaFuzzTargets", targets: ["PrimaFuzzTargets"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // SHA-256 of source files and tensors at memory speed (BoringSSL's SHA-NI/AVX2 code paths).
        .package(url: "https://github.com/apple/swift-crypto", "3.12.0"..<"5.0.0"),
    ],
    targets: [
        systemLibrary("CHDF5", pkgConfig: "hdf5", apt: "libhdf5-dev"),
        systemLibrary("CPNG", pkgConfig: "libpng", apt: "libpng-dev"),
        systemLibrary("CJSONC", pkgConfig: "json-c", apt: "libjson-c-dev"),
        systemLibrary("CZlib", pkgConfig: "zlib", apt: "zlib1g-dev"),
        // Only for the differential test of the tokenizer's regex matcher against Oniguruma.
        systemLibrary("COniguruma", pkgConfig: "oniguruma", apt: "libonig-dev"),

        .target(name: "PrimaKernels"),
        .target(name: "PrimaJSON"),
        // The seeded streams (SplitMix64 keyed by a name) of training and of the synthetic cohort.
        .target(name: "PrimaRandom"),
        // Input files (regular files only, identity by device + inode) and the one temp-file-and-rename writer.
        .target(name: "PrimaIO"),
        .target(name: "PrimaTensor", dependencies: ["PrimaKernels"]),
        .target(name: "PrimaSafetensors", dependencies: ["PrimaIO", "PrimaJSON", "PrimaKernels", "PrimaTensor"]),
        .target(
            name: "PrimaCheckpoint",
            dependencies: ["CHDF5", "CZlib", "PrimaIO", "PrimaJSON", "PrimaKernels", "PrimaTensor"]),
        // libpng behind a C shim that keeps its setjmp/longjmp error handling out of Swift frames.
        .target(name: "PrimaPNG", dependencies: ["CPNG"]),
        .target(name: "PrimaImage", dependencies: ["CPNG", "PrimaIO", "PrimaPNG", "PrimaTensor"]),
        .target(name: "PrimaModels", dependencies: ["PrimaJSON", "PrimaTensor", "PrimaCheckpoint", "PrimaImage", "PrimaMetadata", "PrimaTokenizers"]),
        .target(name: "PrimaQuantize", dependencies: ["PrimaIO", "PrimaJSON", "PrimaTensor", "PrimaCheckpoint", "PrimaModels", "PrimaTokenizers"]),
        .target(
            name: "PrimaConvert",
            dependencies: [
                "PrimaIO", "PrimaJSON", "PrimaTensor", "PrimaSafetensors", "PrimaCheckpoint", "PrimaModels", "PrimaQuantize",
                "PrimaTokenizers", "PrimaMetadata", .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .target(
            name: "PrimaCLI",
            dependencies: ["PrimaCheckpoint", "PrimaIO", "PrimaTensor", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .target(name: "PrimaTokenizers", dependencies: ["CJSONC", "PrimaIO"]),
        // Patient metadata → the text the PRIMA text encoder reads (Docs/prima-model.md, "Metadata to text").
        .target(name: "PrimaMetadata", dependencies: ["PrimaJSON"]),
        // One PRIMA diagnosis from a checkpoint, PNG and metadata record; batch runs over case folders and their metrics.
        .target(
            name: "PrimaDiagnose",
            dependencies: ["PrimaCheckpoint", "PrimaImage", "PrimaIO", "PrimaJSON", "PrimaMetadata", "PrimaModels", "PrimaTensor", "PrimaTokenizers"]),
        // Training: the optimiser, the data pipeline of the three stages and the training state (Formats/prima-training.md).
        .target(
            name: "PrimaTrain",
            dependencies: ["PrimaCheckpoint", "PrimaDiagnose", "PrimaImage", "PrimaIO", "PrimaJSON", "PrimaMetadata", "PrimaModels",
                           "PrimaRandom", "PrimaTensor", "PrimaTokenizers", .product(name: "Crypto", package: "swift-crypto")]),
        // A seeded synthetic cohort in PAD-UFES-20's layout: metadata, drawn lesion images, a risk-factor corpus.
        .target(name: "PrimaCohort", dependencies: ["PrimaImage", "PrimaIO", "PrimaJSON", "PrimaRandom"]),
        // The paper's evaluation protocol: K-fold cross-validation of PRIMA, its ablations and baselines, and the report.
        .target(
            name: "PrimaEval",
            dependencies: ["PrimaCheckpoint", "PrimaDiagnose", "PrimaImage", "PrimaIO", "PrimaJSON", "PrimaMetadata", "PrimaTensor",
                           "PrimaTrain", .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "PrimaVerify", dependencies: ["PrimaCheckpoint", "PrimaDiagnose", "PrimaIO", "PrimaJSON", "PrimaModels", "PrimaQuantize", "PrimaTensor"]),
        .executableTarget(
            name: "prima-verify",
            dependencies: ["PrimaCLI", "PrimaIO", "PrimaVerify", "PrimaCheckpoint", "PrimaModels", "PrimaTensor",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/Tools/prima-verify"),
        .executableTarget(
            name: "prima-convert",
            dependencies: ["PrimaCLI", "PrimaConvert", "PrimaIO", "PrimaTokenizers", "PrimaMetadata",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/Tools/prima-convert"),
        .executableTarget(
            name: "prima-quantize",
            dependencies: ["PrimaCLI", "PrimaIO", "PrimaQuantize", "PrimaCheckpoint", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/Tools/prima-quantize"),
        .executableTarget(
            name: "prima-diagnose",
            dependencies: ["PrimaCLI", "PrimaDiagnose", "PrimaIO", "PrimaJSON", "PrimaMetadata", "PrimaModels", "PrimaTokenizers",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/Tools/prima-diagnose"),
        .executableTarget(
            name: "prima-train",
            dependencies: ["PrimaCLI", "PrimaCheckpoint", "PrimaIO", "PrimaJSON", "PrimaTensor", "PrimaTrain",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/Tools/prima-train"),
        .executableTarget(
            name: "prima-eval",
            dependencies: ["PrimaCLI", "PrimaCheckpoint", "PrimaEval", "PrimaIO", "PrimaTensor", "PrimaTrain",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/Tools/prima-eval"),
        .executableTarget(
            name: "prima-cohort",
            dependencies: ["PrimaCLI", "PrimaCohort", "PrimaIO", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/Tools/prima-cohort"),
        // Measures the int8 kernels against OpenBLAS sgemm (Docs/benchmarks.md); depends on nothing heavier.
        .executableTarget(name: "prima-bench-int8", dependencies: ["PrimaTensor"], path: "Sources/Tools/prima-bench-int8"),

        // Every parser a user's file reaches, as entry points over arbitrary bytes: driven by libFuzzer (Tests/Fuzz)
        // and replayed over the committed corpus and crash inputs by PrimaFuzzRegressionTests.
        .target(name: "PrimaFuzzTargets", dependencies: ["PrimaImage", "PrimaJSON", "PrimaMetadata", "PrimaSafetensors", "PrimaTokenizers", "PrimaVerify"]),
        .target(name: "PrimaTestSupport", path: "Tests/Support"),
        .testTarget(name: "PrimaJSONTests", dependencies: ["PrimaJSON"]),
        .testTarget(name: "PrimaTensorTests", dependencies: ["PrimaTensor", "PrimaKernels", "PrimaTestSupport"]),
        .testTarget(name: "PrimaSafetensorsTests", dependencies: ["PrimaSafetensors"]),
        .testTarget(name: "PrimaCheckpointTests", dependencies: ["PrimaCheckpoint", "PrimaIO"]),
        .testTarget(
            name: "PrimaConvertTests",
            dependencies: ["PrimaConvert", "PrimaSafetensors", "PrimaCheckpoint", "PrimaJSON", "PrimaTestSupport", "prima-convert"]),
        .testTarget(
            name: "PrimaQuantizeTests",
            dependencies: ["PrimaQuantize", "PrimaCheckpoint", "PrimaSafetensors", "PrimaTensor", "PrimaJSON", "PrimaTestSupport",
                           "prima-quantize", "prima-convert"]),
        .testTarget(
            name: "PrimaRuntimeTests",
            dependencies: ["PrimaModels", "PrimaVerify", "PrimaCheckpoint", "PrimaConvert", "PrimaTensor", "PrimaKernels",
                           "PrimaJSON", "PrimaSafetensors", "PrimaDiagnose", "PrimaMetadata", "PrimaTestSupport", "prima-verify", "prima-convert", "prima-quantize", "prima-diagnose"]),
        .testTarget(name: "PrimaImageTests", dependencies: ["PrimaImage", "PrimaTensor", "PrimaJSON", "PrimaTestSupport"]),
        .testTarget(
            name: "PrimaTokenizersTests",
            dependencies: ["PrimaTokenizers", "PrimaJSON", "PrimaTestSupport", "prima-convert", "COniguruma"]),
        .testTarget(name: "PrimaMetadataTests", dependencies: ["PrimaMetadata", "PrimaJSON", "PrimaTestSupport"]),
        .testTarget(
            name: "PrimaTrainTests",
            dependencies: ["PrimaTrain", "PrimaCheckpoint", "PrimaDiagnose", "PrimaModels", "PrimaTensor", "PrimaJSON", "PrimaTestSupport",
                           "prima-train", "prima-convert", "prima-verify"]),
        .testTarget(
            name: "PrimaCohortTests",
            dependencies: ["PrimaCohort", "PrimaTrain", "PrimaDiagnose", "PrimaMetadata", "PrimaImage", "PrimaTestSupport", "prima-cohort"]),
        .testTarget(
            name: "PrimaEvalTests",
            dependencies: ["PrimaEval", "PrimaCheckpoint", "PrimaCohort", "PrimaDiagnose", "PrimaTrain", "PrimaIO", "PrimaJSON", "PrimaMetadata", "PrimaQuantize",
                           "PrimaTestSupport", "prima-eval"]),
        .testTarget(name: "PrimaDiagnoseTests", dependencies: ["PrimaDiagnose", "PrimaMetadata", "PrimaJSON", "PrimaTestSupport"]),
        .testTarget(name: "PrimaFuzzRegressionTests", dependencies: ["PrimaFuzzTargets", "PrimaTestSupport", "prima-verify"]),
        // File-system behaviour of every tool: inputs that are not regular files, outputs that alias inputs,
        // temporaries under signals, SIGKILL and concurrent runs.
        .testTarget(
            name: "PrimaIOTests",
            dependencies: ["PrimaIO", "PrimaJSON", "PrimaTestSupport", "prima-convert", "prima-quantize", "prima-verify", "prima-diagnose"]),
        .testTarget(name: "SystemLibraryTests", dependencies: ["PrimaTensor", "PrimaKernels", "CPNG", "CJSONC", "CHDF5"]),
    ],
    swiftLanguageModes: [.v6]
)
