/// A convolution whose stride equals its kernel over channels-last tokens: the PRIMA sequence projectors
/// (Formats/prima-checkpoint.md §8), `torch.nn.Conv2d(C, O, 2, stride=2)` over a patch-token grid and
/// `torch.nn.Conv1d(C, O, 2, stride=2)` over text tokens.
///
/// Shapes: tokens [gH·gW, C] (row r·gW + c is grid cell (r, c); a sequence of L tokens is the grid 1 × L), weight
/// [O, C, kH, kW] (Conv2d) or [O, C, k] (Conv1d, read as kH = 1, kW = k), bias [O] → [(gH/kH)·(gW/kW), O], row
/// i·(gW/kW) + j for output cell (i, j). The last `gH mod kH` grid rows and `gW mod kW` columns are dropped, as the
/// strided convolution never reaches them.
public enum TokenConvolution {
    /// The weight [O, C, k…] as a matrix [O, k…·C]: kernel positions outermost, channels innermost, so that an
    /// im2col row is the concatenation of whole token vectors (PrimaHeads' layout). Callers that run the forward
    /// often keep it, for ``forward(_:gridHeight:gridWidth:weightMatrix:kernel:bias:)``.
    public static func weightMatrix(_ weight: Tensor) -> Tensor {
        let out = weight.shape[0], channels = weight.shape[1], taps = weight.shape.dropFirst(2).reduce(1, *)
        let matrix = Tensor(zeros: [out, taps * channels], dtype: .f32)
        weight.withFloat32 { w in matrix.withMutableFloat32 { m in
            for o in 0..<out { for c in 0..<channels { for t in 0..<taps {
                m[o * taps * channels + t * channels + c] = w[(o * channels + c) * taps + t]
            } } }
        } }
        return matrix
    }

    /// (kH, kW) of a Conv2d weight [O, C, kH, kW] or a Conv1d weight [O, C, k] (1, k).
    public static func kernel(of weight: Tensor) -> (height: Int, width: Int) {
        precondition(weight.shape.count == 3 || weight.shape.count == 4, "token convolution: weight \(ShapeMath.describe(weight.shape))")
        return weight.shape.count == 4 ? (weight.shape[2], weight.shape[3]) : (1, weight.shape[2])
    }

    /// The forward pass as PrimaHeads computes it: im2col rows [cells, kH·kW·C] in (ky, kx, c) order, then
    /// ``Linear/forward(_:weight:bias:activation:)`` with ``weightMatrix(_:)`` (the same bits).
    public static func forward(_ tokens: Tensor, gridHeight: Int, gridWidth: Int, weight: Tensor, bias: Tensor? = nil) -> Tensor {
        forward(tokens, gridHeight: gridHeight, gridWidth: gridWidth, weightMatrix: weightMatrix(weight),
                kernel: kernel(of: weight), bias: bias)
    }

    /// ``forward(_:gridHeight:gridWidth:weight:bias:)`` with the weight already as ``weightMatrix(_:)`` [O, kH·kW·C].
    public static func forward(_ tokens: Tensor, gridHeight gh: Int, gridWidth gw: Int, weightMatrix: Tensor,
                               kernel: (height: Int, width: Int), bias: Tensor? = nil) -> Tensor {
        let (kh, kw) = kernel
        let c = tokens.shape.count == 2 ? tokens.shape[1] : 0
        precondition(tokens.shape == [gh * gw, c] && kh > 0 && kw > 0 && weightMatrix.shape.count == 2
                     && weightMatrix.shape[1] == kh * kw * c,
                     "token convolution: tokens \(ShapeMath.describe(tokens.shape)) on a \(gh)×\(gw) grid do not match weight \(ShapeMath.describe(weightMatrix.shape))")
        let oh = gh / kh, ow = gw / kw
        let columns = Tensor(zeros: [oh * ow, kh * kw * c], dtype: .f32)
        tokens.withFloat32 { x in columns.withMutableFloat32 { m in
            for i in 0..<oh { for j in 0..<ow { for ky in 0..<kh { for kx in 0..<kw {
                let source = ((kh * i + ky) * gw + kw * j + kx) * c
                let target = ((i * ow + j) * kh * kw + ky * kw + kx) * c
                (m.baseAddress! + target).update(from: x.baseAddress! + source, count: c)
            } } } }
        } }
        return Linear.forward(columns, weight: weightMatrix, bias: bias)
    }

    // MARK: Backward

    /// The fast backward from dy [cells, O], on the weight's own layout [O, C·kH·kW] (so no reordering): im2col rows
    /// in (c, ky, kx) order, then
    /// - `weightGradient` [O, C, kH, kW] or [O, C, k], if given, gets dyᵀ·cols ADDED (sgemm, beta 1; nil: frozen);
    /// - `biasGradient` [O], if given, gets Σ_cells dy added;
    /// - returns d(tokens) [gH·gW, C] when `inputGradient` (dcols = dy·W by sgemm, scattered back: the windows do
    ///   not overlap; dropped grid rows and columns get 0), else nil.
    @discardableResult
    public static func backward(_ dy: Tensor, tokens: Tensor, gridHeight gh: Int, gridWidth gw: Int, weight: Tensor,
                                weightGradient: Tensor? = nil, biasGradient: Tensor? = nil,
                                inputGradient: Bool = false) -> Tensor? {
        let (kh, kw, c, out) = dimensions(dy, tokens, gh, gw, weight, weightGradient, biasGradient)
        let oh = gh / kh, ow = gw / kw, cells = oh * ow, k = c * kh * kw
        // cols [cells, C·kH·kW]: cols[cell, (ch·kH + ky)·kW + kx] = tokens[(kH·i + ky)·gW + kW·j + kx, ch].
        func column(_ cell: Int, _ ch: Int, _ ky: Int, _ kx: Int) -> (Int, Int) {
            let (i, j) = (cell / ow, cell % ow)
            return (cell * k + (ch * kh + ky) * kw + kx, ((kh * i + ky) * gw + kw * j + kx) * c + ch)
        }
        if let weightGradient, cells > 0 {
            var cols = [Float](repeating: 0, count: cells * k)
            tokens.withFloat32 { x in
                for cell in 0..<cells { for ky in 0..<kh { for kx in 0..<kw { for ch in 0..<c {
                    let (to, from) = column(cell, ch, ky, kx)
                    cols[to] = x[from]
                } } } }
            }
            dy.withFloat32 { g in cols.withUnsafeBufferPointer { a in weightGradient.withMutableFloat32 { dw in
                // dW [O, K] += dy [cells, O]ᵀ · cols [cells, K]
                BLAS.sgemm(transA: true, m: out, n: k, k: cells, a: g.baseAddress!, lda: out, b: a.baseAddress!, ldb: k,
                           beta: 1, c: dw.baseAddress!, ldc: k)
            } } }
        }
        if let biasGradient {
            dy.withFloat32 { g in biasGradient.withMutableFloat32 { db in
                for cell in 0..<cells { for o in 0..<out { db[o] += g[cell * out + o] } }
            } }
        }
        guard inputGradient else { return nil }
        let dx = Tensor(zeros: tokens.shape, dtype: .f32)
        guard cells > 0 else { return dx }
        var dcols = [Float](repeating: 0, count: cells * k)
        dy.withFloat32 { g in weight.withFloat32 { w in dcols.withUnsafeMutableBufferPointer { d in
            // dcols [cells, K] = dy [cells, O] · W [O, K]
            BLAS.sgemm(m: cells, n: k, k: out, a: g.baseAddress!, lda: out, b: w.baseAddress!, ldb: k, c: d.baseAddress!, ldc: k)
        } } }
        dx.withMutableFloat32 { x in
            for cell in 0..<cells { for ky in 0..<kh { for kx in 0..<kw { for ch in 0..<c {
                let (from, to) = column(cell, ch, ky, kx)
                x[to] = dcols[from]
            } } } }
        }
        return dx
    }

    /// The plain-loop reference for ``backward(_:tokens:gridHeight:gridWidth:weight:weightGradient:biasGradient:inputGradient:)``:
    /// the sums from the convolution's indices in double, each gradient element rounded once and then added.
    @discardableResult
    public static func backwardReference(_ dy: Tensor, tokens: Tensor, gridHeight gh: Int, gridWidth gw: Int,
                                         weight: Tensor, weightGradient: Tensor? = nil, biasGradient: Tensor? = nil,
                                         inputGradient: Bool = false) -> Tensor? {
        let (kh, kw, c, out) = dimensions(dy, tokens, gh, gw, weight, weightGradient, biasGradient)
        let oh = gh / kh, ow = gw / kw
        let g = dy.float32Values(), x = tokens.float32Values(), w = weight.float32Values()
        var dw = [Double](repeating: 0, count: w.count), db = [Double](repeating: 0, count: out)
        var dx = [Double](repeating: 0, count: x.count)
        for i in 0..<oh {
            for j in 0..<ow {
                for o in 0..<out {
                    let upstream = Double(g[(i * ow + j) * out + o])
                    db[o] += upstream
                    for ch in 0..<c {
                        for ky in 0..<kh {
                            for kx in 0..<kw {
                                let token = ((kh * i + ky) * gw + kw * j + kx) * c + ch
                                let tap = ((o * c + ch) * kh + ky) * kw + kx
                                dw[tap] += upstream * Double(x[token])
                                dx[token] += upstream * Double(w[tap])
                            }
                        }
                    }
                }
            }
        }
        weightGradient?.withMutableFloat32 { buffer in for n in dw.indices { buffer[n] += Float(dw[n]) } }
        biasGradient?.withMutableFloat32 { buffer in for n in db.indices { buffer[n] += Float(db[n]) } }
        return inputGradient ? Tensor(shape: tokens.shape, float32: dx.map(Float.init)) : nil
    }

    /// (kH, kW, C, O) after checking every shape.
    private static func dimensions(_ dy: Tensor, _ tokens: Tensor, _ gh: Int, _ gw: Int, _ weight: Tensor,
                                   _ weightGradient: Tensor?, _ biasGradient: Tensor?) -> (Int, Int, Int, Int) {
        let (kh, kw) = kernel(of: weight)
        let out = weight.shape[0], c = weight.shape[1]
        precondition(kh > 0 && kw > 0 && tokens.shape == [gh * gw, c],
                     "token convolution: tokens \(ShapeMath.describe(tokens.shape)) are not [\(gh)·\(gw), \(c)]")
        precondition(dy.shape == [(gh / kh) * (gw / kw), out], "token convolution backward: dy \(ShapeMath.describe(dy.shape))")
        precondition(weightGradient.map { $0.shape == weight.shape } ?? true, "token convolution backward: weight gradient shape")
        precondition(biasGradient.map { $0.shape == [out] } ?? true, "token convolution backward: bias gradient shape")
        return (kh, kw, c, out)
    }
}
