import CHDF5
import CJSONC
import CPNG
import PrimaKernels
import PrimaTensor
import Testing

/// The four system libraries link and answer: a build that resolved the wrong headers or libraries fails here
/// rather than deep inside a model test.
@Suite struct SystemLibraryTests {
    @Test func hdf5IsAtLeast1_10() {
        var major: UInt32 = 0, minor: UInt32 = 0, release: UInt32 = 0
        #expect(H5get_libversion(&major, &minor, &release) >= 0)
        #expect(major == 1 && minor >= 10)
    }

    /// OpenBLAS is reached only through `BLAS`, which opens it after choosing its core from the CPU's features. All
    /// test targets link into one test process: a target that linked OpenBLAS (a `link "openblas"` module) would load
    /// it at start-up with OpenBLAS's own detection, and every test would run other kernels than the tools do
    /// (measured: "Cooperlake" in the tests against "SkylakeX" in the tools on an AMD EPYC, with trained weights
    /// differing in the last bits between the two).
    @Test func openBLASRunsTheCoreTheRuntimeChose() {
        // [1 2; 3 4] · [5 6; 7 8] = [19 22; 43 50]
        let a: [Float] = [1, 2, 3, 4], b: [Float] = [5, 6, 7, 8]
        var c: [Float] = [0, 0, 0, 0]
        a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
            BLAS.sgemm(m: 2, n: 2, k: 2, a: ap.baseAddress!, lda: 2, b: bp.baseAddress!, ldb: 2, c: cp.baseAddress!, ldc: 2)
        } } }
        #expect(c == [19, 22, 43, 50])
        let info = BLAS.info
        if let preset = info.presetCoreType {
            #expect(info.chosenCoreType == nil, "OPENBLAS_CORETYPE=\(preset) was preset; the runtime must not choose another")
        } else if let chosen = BLAS.coreType(forFeatures: prima_cpu_features()) {
            #expect(info.chosenCoreType == chosen)
            #expect(info.coreName.lowercased() == chosen.lowercased(), "OpenBLAS runs \(info.coreName), chosen \(chosen): was it loaded before BLAS?")
        }
    }

    @Test func libpngHeaderMatchesLibrary() {
        let header = String(cString: prima_png_header_version())
        let library = String(cString: png_get_libpng_ver(nil))
        #expect(header == library)
    }

    @Test func jsonCParses() {
        let object = json_tokener_parse("{\"a\": [1, 2, 3]}")
        defer { json_object_put(object) }
        var array: OpaquePointer? = nil
        #expect(json_object_object_get_ex(object, "a", &array) != 0)
        #expect(json_object_array_length(array) == 3)
    }
}
