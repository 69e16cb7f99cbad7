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
        // cols [B·h·w, Cin·pH·pW]: row (b, r, c) holds the patch's pixels in (channel, ky, kx) order.
        var cols = [Float](repeating: 0, count: rows * k)
        pixels.withFloat32 { src in
            cols.withUnsafeMutableBufferPointer { dst in
                for b in 0..<batch {
                    for r in 0..<h {
                        for c in 0..<w {
                            let row = dst.baseAddress! + ((b * h + r) * w + c) * k
                            for ch in 0..<channels {
                                for ky in 0..<ph {
                                    // pixels[b, ch, r·pH + ky, c·pW ..< c·pW + pW]: one contiguous run of pW values.
                                    let from = src.baseAddress! + ((b * channels + ch) * height + r * ph + ky) * width + c * pw
                                    (row + (ch * ph + ky) * pw).update(from: from, count: pw)
                                }
                            }
                        }
                    }
                }
            }
        }
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
