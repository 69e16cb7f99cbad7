import Foundation
import PrimaTestSupport
import Testing
import PrimaCheckpoint
import PrimaConvert
import PrimaModels
import PrimaTensor
import PrimaVerify


@Suite struct PatchEmbeddingTests {
    /// Odd sizes throughout, remainders on both axes, a non-square kernel, and with and without bias.
    @Test(arguments: [
        (batch: 2, channels: 3, height: 17, width: 23, ph: 5, pw: 5, out: 7, bias: true),
        (batch: 1, channels: 3, height: 9, width: 31, ph: 3, pw: 7, out: 5, bias: true),
        (batch: 3, channels: 1, height: 11, width: 11, ph: 11, pw: 11, out: 9, bias: false),
        (batch: 1, channels: 3, height: 48, width: 33, ph: 16, pw: 16, out: 33, bias: true),
    ])
    func fastPathMatchesReference(_ c: (batch: Int, channels: Int, height: Int, width: Int, ph: Int, pw: Int, out: Int, bias: Bool)) {
        var rng = SplitMix64(seed: UInt64(c.height * 1000 + c.width))
        let pixels = rng.tensor([c.batch, c.channels, c.height, c.width])
        let weight = rng.tensor([c.out, c.channels, c.ph, c.pw])
        let bias = c.bias ? rng.tensor([c.out]) : nil
        let fast = PatchEmbedding.forward(pixels, weight: weight, bias: bias)
        let reference = PatchEmbedding.reference(pixels, weight: weight, bias: bias)
        let rows = c.batch * (c.height / c.ph) * (c.width / c.pw)
        #expect(fast.shape == [rows, c.out])
        #expect(reference.shape == [rows, c.out])
        let worst = zip(fast.float32Values(), reference.float32Values()).map { abs($0 - $1) }.max() ?? 0
        #expect(worst <= 1e-5, "max |fast − reference| = \(worst)")
    }

    /// The reference itself on a hand-checkable case: a 1×2 patch grid of a 2×5 image (last column dropped).
    @Test func referenceIndexing() {
        // pixels [1, 1, 2, 5] = 0 1 2 3 4 / 5 6 7 8 9; kernel 2×2 with weights 1, 10, 100, 1000; bias 0.5.
        let pixels = Tensor(shape: [1, 1, 2, 5], float32: (0..<10).map(Float.init))
        let weight = Tensor(shape: [1, 1, 2, 2], float32: [1, 10, 100, 1000])
        let bias = Tensor(shape: [1], float32: [0.5])
        let expected: [Float] = [0 + 10 + 500 + 6000 + 0.5, 2 + 30 + 700 + 8000 + 0.5]
        #expect(PatchEmbedding.reference(pixels, weight: weight, bias: bias).float32Values() == expected)
        #expect(PatchEmbedding.forward(pixels, weight: weight, bias: bias).float32Values() == expected)
    }
}

@Suite struct DINOv3RoPETests {
    /// Layout [y | x] per row (tiled to [y | x | y | x] by the tables), patch-centre coordinates per axis.
    @Test func anglesLayout() {
        // head 8: inv_freq = [1, 1/10]; a 2 × 4 grid: y ∈ {−0.5, 0.5}, x ∈ {−0.75, −0.25, 0.25, 0.75}.
        let angles = DINOv3ViTModel.ropeAngles(gridHeight: 2, gridWidth: 4, headDim: 8, theta: 100)
        #expect(angles.count == 8)
        let twoPi = Float(2 * Double.pi)
        let row6 = angles[6]   // r = 1, c = 2: y = 0.5, x = 0.25
        #expect(row6[0] == twoPi * 0.5 && row6[2] == twoPi * 0.25)
        #expect(row6[1] == (twoPi * 0.5) * Float(0.1) && row6[3] == (twoPi * 0.25) * Float(0.1))
        let (cos, sin) = DINOv3ViTModel.ropeTables(gridHeight: 2, gridWidth: 4, headDim: 8, theta: 100)
        #expect(Array(cos[48..<56]) == (row6 + row6).map { cosf($0) })
        #expect(Array(sin[48..<56]) == (row6 + row6).map { sinf($0) })
    }
}

@Suite struct DINOv3TraceTests {
    static let traceFiles = RuntimeTestSupport.traces(prefix: "dinov3-")

    @Test func everyDINOv3TraceIsFound() {
        #expect(Self.traceFiles.count >= 4, "found \(Self.traceFiles)")
        #expect(Self.traceFiles.contains("dinov3-mlp-reg4-f32-nonsquare.h5"))
        for file in Self.traceFiles { #expect(RuntimeTestSupport.fixture(forTrace: file) != nil, "no fixture for \(file)") }
        #expect(RuntimeTestSupport.fixture(forTrace: "dinov3-mlp-reg4-f32-nonsquare.h5") == "dinov3-mlp-reg4-f32")
    }

    /// Every activation within Tolerances.fp32: cosine ≥ 0.99999 and max_abs ≤ 1e-4·(1 + max|ref|).
    @Test(arguments: traceFiles)
    func matchesTransformers(_ file: String) throws {
        let fixture = try #require(RuntimeTestSupport.fixture(forTrace: file))
        let checkpoint = try RuntimeTestSupport.importFixture(fixture)
        defer { try? FileManager.default.removeItem(atPath: (checkpoint as NSString).deletingLastPathComponent) }
        let trace = try Trace(path: RuntimeTestSupport.traces + "/" + file)
        let report = try TraceVerifier.run(checkpoint: checkpoint, trace: trace, tolerances: .fp32, repeats: 1)
        for a in report.activations {
            #expect(a.pass, "\(file) \(a.name): \(a.failure ?? "")")
        }
        #expect(report.activations.map(\.name).contains("final_norm"))
        let worst = report.activations.max { $0.maxAbs < $1.maxAbs }!
        let lowestCosine = report.activations.min { $0.cosine < $1.cosine }!
        print("\(file): worst max_abs \(worst.maxAbs) (\(worst.name)), lowest cosine \(lowestCosine.cosine) (\(lowestCosine.name)), pass \(report.pass)")
        #expect(report.pass)
    }

    /// H or W not a multiple of the patch size is rejected with the shape in the message.
    @Test func rejectsPartialPatches() throws {
        let checkpointPath = try RuntimeTestSupport.importFixture("dinov3-mlp-reg4-f32")
        defer { try? FileManager.default.removeItem(atPath: (checkpointPath as NSString).deletingLastPathComponent) }
        // ComponentReader holds its checkpoint unowned: keep the checkpoint alive while the weights load.
        let checkpoint = try Checkpoint(path: checkpointPath)
        let model = try withExtendedLifetime(checkpoint) { try loadComponentModel(try checkpoint.component(.imageEncoder)) }
        for shape in [[1, 3, 33, 32], [1, 3, 32, 20], [1, 3, 4, 8], [1, 1, 32, 32]] {
            let pixels = Tensor(zeros: shape, dtype: .f32)
            do {
                _ = try model.forward(.pixels(pixels)) { _, _ in }
                Issue.record("pixel_values \(shape) was accepted")
            } catch let error as RuntimeError {
                #expect(error.description.contains(ShapeMath.describe(shape)), "\(error.description)")
            }
        }
        // A non-square multiple runs: 2 × 3 patches + CLS + 4 registers = 11 tokens.
        let output = try model.forward(.pixels(Tensor(zeros: [1, 3, 16, 24], dtype: .f32))) { _, _ in }
        #expect(output.shape == [11, 32])
    }
}

extension SplitMix64 {
    /// A tensor of uniform values in [−1, 1).
    mutating func tensor(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, float32: (0..<shape.reduce(1, *)).map { _ in uniform() })
    }
}
