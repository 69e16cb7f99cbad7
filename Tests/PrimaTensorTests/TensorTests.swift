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

/// The storage pool keeps a training step's freed buffers for the next step, and only while a step loop runs. Each
/// test drives a pool of its own (the shared one serves every test running in parallel).
@Suite struct StorageReuseTests {
    let size = 1 << 20

    /// `count` fresh buffers of `bytes` bytes given to `pool`; their addresses.
    func give(_ count: Int, of bytes: Int, to pool: StoragePool) -> Set<UInt> {
        Set((0..<count).map { _ in
            let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
            if !pool.give(raw, count: bytes) { raw.deallocate() }
            return UInt(bitPattern: raw)
        })
    }

    func take(_ count: Int, of bytes: Int, from pool: StoragePool) -> Set<UInt> {
        Set((0..<count).compactMap { _ in pool.take(bytes).map { UInt(bitPattern: $0) } })
    }

    @Test func aStepsBuffersServeTheNextStep() {
        let pool = StoragePool()
        pool.stepLoop(entering: true, bytes: 1 << 30)
        // Twelve buffers of one size, as a forward's tape holds them: more than the standard 4 per size.
        let given = give(12, of: size, to: pool)
        #expect(pool.keptCount(size) == 12)
        #expect(take(12, of: size, from: pool) == given)
        // A step's logits, above the standard pool's 128 MiB, are kept too.
        let logits = give(1, of: 132 << 20, to: pool)
        #expect(take(1, of: 132 << 20, from: pool) == logits)
        pool.stepLoop(entering: false, bytes: 1 << 30)
    }

    @Test func aRequestThePoolCannotServeFreesAsMuchOfItsOldest() {
        let pool = StoragePool()
        pool.stepLoop(entering: true, bytes: 1 << 30)
        _ = give(3, of: size, to: pool)
        // A size it has none of: as many bytes of its oldest buffers are freed (one and a bit: two buffers).
        #expect(pool.take(size + 4096) == nil)
        #expect(pool.keptCount(size) == 1)
        pool.stepLoop(entering: false, bytes: 1 << 30)
        // Outside a step loop a miss frees nothing.
        _ = give(2, of: size, to: pool)
        #expect(pool.take(size + 4096) == nil)
        #expect(pool.keptCount(size) == 3)
    }

    @Test func theStandardLimitsReturnWhenTheLastLoopEnds() {
        let pool = StoragePool()
        pool.stepLoop(entering: true, bytes: 1 << 30)
        pool.stepLoop(entering: true, bytes: 1 << 30)
        _ = give(8, of: size, to: pool)
        // The inner loop's end leaves the outer loop's limits.
        pool.stepLoop(entering: false, bytes: 1 << 30)
        #expect(pool.keptCount(size) == 8)
        pool.stepLoop(entering: false, bytes: 1 << 30)
        #expect(pool.keptCount(size) == StoragePool.Limits.standard.perSize)
        // And the standard limits hold again.
        _ = give(2, of: size, to: pool)
        #expect(pool.keptCount(size) == StoragePool.Limits.standard.perSize)
    }

    @Test func tensorsUseTheSharedPoolInAStepLoop() {
        // An odd size no other test allocates (f32 [257, 1021]); a reused buffer is zeroed again.
        StorageReuse.acrossSteps {
            var first: Tensor? = Tensor(shape: [257, 1021], float32: [Float](repeating: 1, count: 257 * 1021))
            first = nil
            #expect(Tensor(zeros: [257, 1021], dtype: .f32).float32Values().allSatisfy { $0 == 0 })
            _ = first
        }
    }
}
