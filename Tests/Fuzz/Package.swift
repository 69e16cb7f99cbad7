// swift-tools-version: 6.0
// libFuzzer driver for the toolkit's parsers (PrimaFuzzTargets). Built and run by run.sh beside this file, with
// `-sanitize=fuzzer,address`; kept out of the main package so that its normal builds carry no sanitizer.
import PackageDescription

let package = Package(
    name: "PrimaFuzz",
    dependencies: [.package(name: "PrimaToolkit", path: "../..")],
    targets: [
        .executableTarget(
            name: "prima-fuzz",
            dependencies: [.product(name: "PrimaFuzzTargets", package: "PrimaToolkit"),
                           .product(name: "PrimaCheckpoint", package: "PrimaToolkit")],
            path: "Sources/prima-fuzz"),
    ],
    swiftLanguageModes: [.v6]
)
