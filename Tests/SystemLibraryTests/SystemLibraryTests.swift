import CBLAS
import CHDF5
import CJSONC
import CPNG
import Testing

/// The four system libraries link and answer: a build that resolved the wrong headers or libraries fails here
/// rather than deep inside a model test.
@Suite struct SystemLibraryTests {
    @Test func hdf5IsAtLeast1_10() {
        var major: UInt32 = 0, minor: UInt32 = 0, release: UInt32 = 0
        #expect(H5get_libversion(&major, &minor, &release) >= 0)
        #expect(major == 1 && minor >= 10)
    }

    @Test func openBLASComputesAProduct() {
        // [1 2; 3 4] · [5; 6] = [17; 39]
        let a: [Float] = [1, 2, 3, 4], x: [Float] = [5, 6]
        var y: [Float] = [0, 0]
        cblas_sgemv(CblasRowMajor, CblasNoTrans, 2, 2, 1, a, 2, x, 1, 0, &y, 1)
        #expect(y == [17, 39])
        #expect(openblas_get_corename() != nil)
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
