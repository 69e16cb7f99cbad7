import Testing
@testable import PrimaTensor

@Suite struct ShapeMathTests {
    @Test func elementAndByteCounts() {
        #expect(ShapeMath.elementCount([]) == 1)
        #expect(ShapeMath.elementCount([2, 3, 4]) == 24)
        #expect(ShapeMath.byteCount([2, 3], .bf16) == 12)
        #expect(ShapeMath.elementCount([0, 5]) == 0)
    }

    @Test func rejectsNegativeAndOverflow() {
        #expect(ShapeMath.elementCount([2, -1]) == nil)
        #expect(ShapeMath.elementCount([Int.max, 2]) == nil)
        #expect(ShapeMath.byteCount([Int.max / 2], .f32) == nil)
    }

    @Test func safetensorsNamesRoundTrip() {
        for dtype in DType.allCases { #expect(DType(safetensorsName: dtype.safetensorsName) == dtype) }
        #expect(DType(safetensorsName: "F8_E4M3") == nil)
        #expect(DType(safetensorsName: "f32") == nil)
    }
}

@Suite struct HalfPrecisionTests {
    @Test func bf16WideningIsExactShift() {
        #expect(HalfPrecision.bf16ToFloat(0x3F80) == 1.0)
        #expect(HalfPrecision.bf16ToFloat(0xC000) == -2.0)
        #expect(HalfPrecision.bf16ToFloat(0x7F80) == .infinity)
    }

    @Test func bf16NarrowingRoundsToNearestEven() {
        // 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125: ties go to the even mantissa (1.0).
        #expect(HalfPrecision.floatToBF16(1.0 + 0x1p-8) == 0x3F80)
        // 1 + 3·2^-8 is halfway between 1.0078125 (odd) and 1.015625 (even): rounds up.
        #expect(HalfPrecision.floatToBF16(1.0 + 3 * 0x1p-8) == 0x3F82)
        #expect(HalfPrecision.floatToBF16(.nan) & 0x7FC0 == 0x7FC0)
        for bits: UInt16 in [0x0000, 0x8000, 0x3F80, 0x4049, 0x7F7F, 0x0001] {
            #expect(HalfPrecision.floatToBF16(HalfPrecision.bf16ToFloat(bits)) == bits)
        }
    }

    @Test func f16RoundTrip() {
        #expect(HalfPrecision.f16ToFloat(0x3C00) == 1.0)
        #expect(HalfPrecision.f16ToFloat(0x0001) == 0x1p-24)
        #expect(HalfPrecision.floatToF16(65520) == 0x7C00)
        for bits: UInt16 in [0x0000, 0x8000, 0x3C00, 0x7BFF, 0x0001, 0x03FF] {
            #expect(HalfPrecision.floatToF16(HalfPrecision.f16ToFloat(bits)) == bits)
        }
    }
}

@Suite struct TensorCoreTests {
    @Test func upcastsHalfTypes() {
        let bf = Tensor(zeros: [2], dtype: .bf16)
        bf.storage.bytes.storeBytes(of: UInt16(0x3F80), toByteOffset: 0, as: UInt16.self)
        bf.storage.bytes.storeBytes(of: UInt16(0xC040), toByteOffset: 2, as: UInt16.self)
        #expect(bf.toFloat32().float32Values() == [1.0, -3.0])
        let f = Tensor(shape: [2, 2], float32: [1, 2, 3, 4])
        #expect(f.byteCount == 16)
        #expect(f.withFloat32 { $0[3] } == 4)
        #expect(Int(bitPattern: f.storage.bytes.baseAddress!) % 64 == 0)
    }
}

/// The storage pool keeps a training step's freed buffers for the next step, and only while a step loop runs.
@Suite(.serialized) struct StorageReuseTests {
    // An odd size no other test allocates (f32 [257, 1021], about 1 MiB), so parallel tests cannot take these buffers.
    let shape = [257, 1021]
    var byteCount: Int { 257 * 1021 * 4 }

    @Test func aStepsBuffersServeTheNextStep() {
        StorageReuse.acrossSteps {
            // Twelve buffers of one size alive at once, as a forward's tape holds them: more than the standard 4.
            var step = (0..<12).map { _ in Tensor(zeros: shape, dtype: .f32) }
            let addresses = Set(step.map { UInt(bitPattern: $0.storage.bytes.baseAddress!) })
            step = []
            #expect(StoragePool.shared.keptCount(byteCount) == 12)
            let next = (0..<12).map { _ in Tensor(zeros: shape, dtype: .f32) }
            #expect(Set(next.map { UInt(bitPattern: $0.storage.bytes.baseAddress!) }) == addresses)
            #expect(next.allSatisfy { $0.float32Values().allSatisfy { $0 == 0 } })   // reused buffers are zeroed again
        }
    }

    @Test func aStepsLogitsAreKeptToo() {
        // 33 × 2^20 f32 = 132 MiB, above the standard pool's largest buffer (a training step's MLM or LM logits).
        let logits = [33, 1 << 20], count = 33 << 22
        StorageReuse.acrossSteps {
            var first: Tensor? = Tensor(zeros: logits, dtype: .f32)
            let address = first!.storage.bytes.baseAddress!
            first = nil
            #expect(Tensor(zeros: logits, dtype: .f32).storage.bytes.baseAddress! == address)
        }
        #expect(StoragePool.shared.keptCount(count) == 0)
    }

    @Test func theStandardLimitsReturnAfterTheLoop() {
        StorageReuse.acrossSteps {
            StorageReuse.acrossSteps { _ = (0..<8).map { _ in Tensor(zeros: shape, dtype: .f32) } }
            // The inner loop's end leaves the outer loop's limits.
            #expect(StoragePool.shared.keptCount(byteCount) == 8)
        }
        #expect(StoragePool.shared.keptCount(byteCount) <= StoragePool.Limits.standard.perSize)
    }
}
