/// ViT patch embedding: `torch.nn.Conv2d(Cin, C, kernel_size=p, stride=p)` with bias, flattened to one row per
/// patch as `conv(x).flatten(2).transpose(1, 2)` gives it.
///
/// Shapes: pixels [B, Cin, H, W], weight [C, Cin, pH, pW], bias [C] → [B·(h·w), C] with h = H / pH and
/// w = W / pW (integer division: the last `H mod pH` rows and `W mod pW` columns of pixels are dropped, as the
/// strided convolution never reaches them). Row `b·h·w + n` is patch n = r·w + c of image b (row-major over the
/// patch grid: r = n / w is the patch row, c = n % w the patch column). Within a patch, the products are summed
/// over (channel, kernel row, kernel column), the order of the flattened weight [C, Cin·pH·pW].
public enum PatchEmbedding {
    /// The patch grid (h, w) = (H / pH, W / pW) of pixels [B, Cin, H, W] under weight [C, Cin, pH, pW].
    public static func grid(pixels: Tensor, weight: Tensor) -> (height: Int, width: Int) {
        let (_, _, _, _, ph, pw, _) = dimensions(pixels, weight, nil)
        return (pixels.shape[2] / ph, pixels.shape[3] / pw)
    }

    /// The fast path: im2col into patch rows [B·h·w, Cin·pH·pW], then one OpenBLAS sgemm against the weight
    /// viewed as [C, Cin·pH·pW] (transposed), accumulated onto the bias.
    ///
    /// pixels [B, Cin, H, W], weight [C, Cin, pH, pW], bias [C] or nil → [B·h·w, C].
    public static func forward(_ pixels: Tensor, weight: Tensor, bias: Tensor? = nil) -> Tensor {
        let (batch, channels, height, width, ph, pw, outChannels) = dimensions(pixels, weight, bias)
        let h = height / ph, w = width / pw
        let rows = batch * h * w, k = channels * ph * pw
        let y = Tensor(zeros: [rows, outChannels], dtype: .f32)
        guard rows > 0 else { return y }
        let cols = patchRows(pixels, patchHeight: ph, patchWidth: pw)
        y.withMutableFloat32 { out in
            if let bias {
                // Start every row from the bias and accumulate the product onto it (beta = 1).
                bias.withFloat32 { b in
                    for row in 0..<rows { (out.baseAddress! + row * outChannels).update(from: b.baseAddress!, count: outChannels) }
                }
            }
            cols.withUnsafeBufferPointer { a in
                weight.withFloat32 { wt in
                    // out [B·h·w, C] = cols [B·h·w, K] · weight [C, K]ᵀ (+ bias)
                    BLAS.sgemm(transB: true, m: rows, n: outChannels, k: k, a: a.baseAddress!, lda: k, b: wt.baseAddress!,
                               ldb: k, beta: bias == nil ? 0 : 1, c: out.baseAddress!, ldc: outChannels)
                }
            }
        }
        return y
    }

    /// The plain-loop reference for ``forward(_:weight:bias:)``: the strided convolution summed directly from the
    /// 4-D indices, in double.
    ///
    /// pixels [B, Cin, H, W], weight [C, Cin, pH, pW], bias [C] or nil → [B·h·w, C].
    public static func reference(_ pixels: Tensor, weight: Tensor, bias: Tensor? = nil) -> Tensor {
        let (batch, channels, height, width, ph, pw, outChannels) = dimensions(pixels, weight, bias)
        let h = height / ph, w = width / pw
        let x = pixels.float32Values(), wt = weight.float32Values(), b = bias?.float32Values()
        var out = [Float](repeating: 0, count: batch * h * w * outChannels)
        for image in 0..<batch {
            for r in 0..<h {
                for c in 0..<w {
                    let patch = (image * h + r) * w + c
                    for o in 0..<outChannels {
                        var sum = Double(b?[o] ?? 0)
                        for ch in 0..<channels {
                            for ky in 0..<ph {
                                for kx in 0..<pw {
                                    let pixel = x[((image * channels + ch) * height + r * ph + ky) * width + c * pw + kx]
                                    sum += Double(pixel) * Double(wt[((o * channels + ch) * ph + ky) * pw + kx])
                                }
                            }
                        }
                        out[patch * outChannels + o] = Float(sum)
                    }
                }
            }
        }
        return Tensor(shape: [batch * h * w, outChannels], float32: out)
    }

    /// im2col: patch rows [B·h·w, Cin·pH·pW] of pixels [B, Cin, H, W]; row (b, r, c) holds the patch's pixels in
    /// (channel, ky, kx) order, the order of the flattened weight.
    private static func patchRows(_ pixels: Tensor, patchHeight ph: Int, patchWidth pw: Int) -> [Float] {
        let (batch, channels, height, width) = (pixels.shape[0], pixels.shape[1], pixels.shape[2], pixels.shape[3])
        var cols = [Float](repeating: 0, count: batch * (height / ph) * (width / pw) * channels * ph * pw)
        pixels.withFloat32 { src in
            cols.withUnsafeMutableBufferPointer { dst in
                forEachPatchRun(pixels.shape, patchHeight: ph, patchWidth: pw) { column, pixel in
                    (dst.baseAddress! + column).update(from: src.baseAddress! + pixel, count: pw)
                }
            }
        }
        return cols
    }

    /// The im2col layout of pixels [B, Cin, H, W] cut into pH × pW patches, as runs of pW contiguous values: calls
    /// `body(column, pixel)` for each run, with its offset in the patch rows [B·h·w, Cin·pH·pW] and in the pixels
    /// (`pixels[b, ch, r·pH + ky, c·pW ..< c·pW + pW]`). im2col copies pixel → column, col2im column → pixel.
    @inline(__always)
    private static func forEachPatchRun(_ shape: [Int], patchHeight ph: Int, patchWidth pw: Int, _ body: (Int, Int) -> Void) {
        let (batch, channels, height, width) = (shape[0], shape[1], shape[2], shape[3])
        let h = height / ph, w = width / pw, k = channels * ph * pw
        for b in 0..<batch {
            for r in 0..<h {
                for c in 0..<w {
                    let row = ((b * h + r) * w + c) * k
                    for ch in 0..<channels {
                        for ky in 0..<ph {
                            body(row + (ch * ph + ky) * pw, ((b * channels + ch) * height + r * ph + ky) * width + c * pw)
                        }
                    }
                }
            }
        }
    }

    // MARK: Backward

    /// The fast backward of ``forward(_:weight:bias:)`` from dy [B·h·w, C]:
    /// - `weightGradient` [C, Cin, pH, pW], if given, gets dW = dyᵀ·cols ADDED to it (sgemm with beta 1, so a training
    ///   step can sum micro-batches; nil: frozen weight, skipped);
    /// - `biasGradient` [C], if given, gets Σ_rows dy added to it;
    /// - returns d(pixels) [B, Cin, H, W] when `inputGradient` (dcols = dy·W by sgemm, scattered back by col2im; the
    ///   patches do not overlap, and pixels past the last whole patch get 0), else nil (pixels are data, not
    ///   trained, in every model here).
    @discardableResult
    public static func backward(_ dy: Tensor, pixels: Tensor, weight: Tensor, weightGradient: Tensor? = nil,
                                biasGradient: Tensor? = nil, inputGradient: Bool = false) -> Tensor? {
        let (batch, channels, height, width, ph, pw, outChannels) = dimensions(pixels, weight, nil)
        let h = height / ph, w = width / pw, rows = batch * h * w, k = channels * ph * pw
        checkGradients(dy, rows: rows, weight: weight, weightGradient: weightGradient, biasGradient: biasGradient)
        if let weightGradient, rows > 0 {
            let cols = patchRows(pixels, patchHeight: ph, patchWidth: pw)
            dy.withFloat32 { g in cols.withUnsafeBufferPointer { a in weightGradient.withMutableFloat32 { dw in
                // dW [C, K] += dy [rows, C]ᵀ · cols [rows, K]
                BLAS.sgemm(transA: true, m: outChannels, n: k, k: rows, a: g.baseAddress!, lda: outChannels,
                           b: a.baseAddress!, ldb: k, beta: 1, c: dw.baseAddress!, ldc: k)
            } } }
        }
        if let biasGradient {
            dy.withFloat32 { g in biasGradient.withMutableFloat32 { db in
                for row in 0..<rows {
                    for o in 0..<outChannels { db[o] += g[row * outChannels + o] }
                }
            } }
        }
        guard inputGradient else { return nil }
        let dx = Tensor(zeros: pixels.shape, dtype: .f32)
        guard rows > 0 else { return dx }
        var dcols = [Float](repeating: 0, count: rows * k)
        dy.withFloat32 { g in weight.withFloat32 { wt in dcols.withUnsafeMutableBufferPointer { dc in
            // dcols [rows, K] = dy [rows, C] · weight [C, K]
            BLAS.sgemm(m: rows, n: k, k: outChannels, a: g.baseAddress!, lda: outChannels, b: wt.baseAddress!, ldb: k,
                       c: dc.baseAddress!, ldc: k)
        } } }
        // col2im: every patch pixel has exactly one patch, so its gradient is copied, not summed.
        dx.withMutableFloat32 { dst in dcols.withUnsafeBufferPointer { src in
            forEachPatchRun(pixels.shape, patchHeight: ph, patchWidth: pw) { column, pixel in
                (dst.baseAddress! + pixel).update(from: src.baseAddress! + column, count: pw)
            }
        } }
        return dx
    }

    /// The plain-loop reference for ``backward(_:pixels:weight:weightGradient:biasGradient:inputGradient:)``: the
    /// same sums taken straight from the 4-D indices in double (each gradient element rounded once, then added to
    /// the buffers given).
    @discardableResult
    public static func backwardReference(_ dy: Tensor, pixels: Tensor, weight: Tensor, weightGradient: Tensor? = nil,
                                         biasGradient: Tensor? = nil, inputGradient: Bool = false) -> Tensor? {
        let (batch, channels, height, width, ph, pw, outChannels) = dimensions(pixels, weight, nil)
        let h = height / ph, w = width / pw
        checkGradients(dy, rows: batch * h * w, weight: weight, weightGradient: weightGradient, biasGradient: biasGradient)
        let g = dy.float32Values(), x = pixels.float32Values(), wt = weight.float32Values()
        var dw = [Double](repeating: 0, count: wt.count), db = [Double](repeating: 0, count: outChannels)
        var dx = [Double](repeating: 0, count: x.count)
        for image in 0..<batch {
            for r in 0..<h {
                for c in 0..<w {
                    let patch = (image * h + r) * w + c
                    for o in 0..<outChannels {
                        let upstream = Double(g[patch * outChannels + o])
                        db[o] += upstream
                        for ch in 0..<channels {
                            for ky in 0..<ph {
                                for kx in 0..<pw {
                                    let pixel = ((image * channels + ch) * height + r * ph + ky) * width + c * pw + kx
                                    let tap = ((o * channels + ch) * ph + ky) * pw + kx
                                    dw[tap] += upstream * Double(x[pixel])
                                    dx[pixel] += upstream * Double(wt[tap])
                                }
                            }
                        }
                    }
                }
            }
        }
        weightGradient?.withMutableFloat32 { out in for i in dw.indices { out[i] += Float(dw[i]) } }
        biasGradient?.withMutableFloat32 { out in for i in db.indices { out[i] += Float(db[i]) } }
        return inputGradient ? Tensor(shape: pixels.shape, float32: dx.map(Float.init)) : nil
    }

    private static func checkGradients(_ dy: Tensor, rows: Int, weight: Tensor, weightGradient: Tensor?, biasGradient: Tensor?) {
        precondition(dy.shape == [rows, weight.shape[0]] && dy.dtype == .f32,
                     "patch embedding backward: dy \(ShapeMath.describe(dy.shape)) is not [\(rows), \(weight.shape[0])]")
        precondition(weightGradient.map { $0.shape == weight.shape && $0.dtype == .f32 } ?? true,
                     "patch embedding backward: weight gradient does not match weight")
        precondition(biasGradient.map { $0.shape == [weight.shape[0]] && $0.dtype == .f32 } ?? true,
                     "patch embedding backward: bias gradient is not [\(weight.shape[0])]")
    }

    /// (B, Cin, H, W, pH, pW, C) after checking that pixels, weight and bias agree.
    private static func dimensions(_ pixels: Tensor, _ weight: Tensor, _ bias: Tensor?)
        -> (Int, Int, Int, Int, Int, Int, Int) {
        precondition(pixels.shape.count == 4 && weight.shape.count == 4 && pixels.shape[1] == weight.shape[1]
                     && weight.shape[2] > 0 && weight.shape[3] > 0,
                     "patch embedding: pixels \(ShapeMath.describe(pixels.shape)) do not match weight \(ShapeMath.describe(weight.shape))")
        precondition(bias.map { $0.shape == [weight.shape[0]] } ?? true, "patch embedding: bias does not match weight")
        return (pixels.shape[0], pixels.shape[1], pixels.shape[2], pixels.shape[3], weight.shape[2], weight.shape[3],
                weight.shape[0])
    }
}
