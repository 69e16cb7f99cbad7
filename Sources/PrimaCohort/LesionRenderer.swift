import Foundation
import PrimaImage

/// Draws the clinical photograph of one cohort image: a lesion on skin (Docs/cohort.md, "Images").
///
/// A float RGB buffer (0…1) is filled pixel by pixel: skin of the patient's Fitzpatrick type with a fine value-noise
/// texture; the lesion an ellipse of the lesion's two diameters (mm to pixels by the photograph's field of view),
/// its border a radial function perturbed by harmonics (asymmetry, irregularity) with a soft edge, its inside the
/// class's colours mixed by value noise (variegation, a third colour, a pearly rim, a central crust, a fissured
/// texture, scale flakes); then vessels and hairs as antialiased polylines, a lighting gradient with vignetting,
/// exposure and white balance, a box blur and sensor noise. The lesion's shape and colours come from the lesion's
/// stream (the same in every image of a lesion), the framing and the photograph's conditions from the image's.
public enum LesionRenderer {
    /// The image of `cohort.images[position]`.
    public static func render(_ cohort: Cohort, position: Int) -> RGBImage {
        let image = cohort.images[position]
        let lesion = cohort.lesions[image.lesion]
        let patient = cohort.patients[lesion.patient]
        let seed = cohort.options.seed
        let size = cohort.options.imageSize
        let look = LesionLook(lesion: lesion, random: CohortRandom(seed: seed, purpose: .lesion, index: image.lesion, part: 1))
        var random = CohortRandom(seed: seed, purpose: .image, index: position)
        return draw(look: look, skinType: patient.skinType, size: size, random: &random)
    }

    /// The lesion's own drawing parameters: the same for every image of the lesion.
    struct LesionLook {
        var appearance: Appearance
        let diameter1: Float, diameter2: Float
        let rotation: Float
        /// Border radius (in units of the ellipse) over `borderSamples` angles.
        let border: [Float]
        /// Vessel polylines in the ellipse's unit coordinates.
        let vessels: [[SIMD2<Float>]]
        let noiseSeed: UInt32
        static let borderSamples = 512

        init(lesion: CohortLesion, random: CohortRandom) {
            var random = random
            var look = Appearance.of(lesion.diagnosis)
            // Overlap: a third of the lesions borrow part of a look-alike class's appearance.
            if random.chance(0.35) {
                let others = Appearance.lookalikes(lesion.diagnosis)
                look = look.mixed(with: .of(others[random.below(others.count)]), Float(random.uniform(0.2, 0.5)))
            }
            func spread(_ value: inout Float, _ sd: Double) { value *= Float(exp(sd * random.normal())) }
            func shift(_ colour: inout SIMD3<Float>) {
                // Mostly lighter or darker, a little hue.
                let common = Float(exp(0.15 * random.normal()))
                for c in 0..<3 { colour[c] = min(1, max(0.02, colour[c] * common + Float(0.015 * random.normal()))) }
            }
            shift(&look.colour1); shift(&look.colour2); shift(&look.colour3); shift(&look.crustColour)
            spread(&look.variegation, 0.3); spread(&look.thirdAmount, 0.4); spread(&look.edge, 0.3)
            spread(&look.irregularity, 0.35); spread(&look.asymmetry, 0.4); spread(&look.texture, 0.3)
            spread(&look.scale, 0.4); spread(&look.rim, 0.4); spread(&look.halo, 0.4)
            look.crust *= Float(random.uniform(0, 1.6))
            look.variegation = min(look.variegation, 1)
            appearance = look
            diameter1 = Float(lesion.diameter1)
            diameter2 = Float(lesion.diameter2)
            rotation = Float(random.uniform(0, 2 * Double.pi))
            // Border: r(θ) = 1 + A₁cos(θ + φ₁) + Σₖ₌₂…₁₂ Aₖ cos(kθ + φₖ), Aₖ falling as 1/k.
            var terms: [(k: Float, amplitude: Float, phase: Float)] = [(1, look.asymmetry * Float(random.uniform(0.5, 1.5)), Float(random.uniform(0, 2 * Double.pi)))]
            for k in 2...12 {
                terms.append((Float(k), look.irregularity * Float(random.uniform(0.2, 1.2)) * 2 / Float(k), Float(random.uniform(0, 2 * Double.pi))))
            }
            border = (0..<Self.borderSamples).map { i in
                let theta = Float(i) / Float(Self.borderSamples) * 2 * .pi
                return max(0.45, 1 + terms.reduce(0) { $0 + $1.amplitude * cos($1.k * theta + $1.phase) })
            }
            var vessels: [[SIMD2<Float>]] = []
            let vesselCount = Int(Double(look.vessels) * random.uniform(0.3, 1.7) + random.unit())
            for _ in 0..<vesselCount {
                let start = Float(random.uniform(0, 0.7)), angle = Float(random.uniform(0, 2 * Double.pi))
                var point = SIMD2<Float>(start * cos(angle), start * sin(angle))
                var heading = Float(random.uniform(0, 2 * Double.pi))
                var path = [point]
                for _ in 0..<7 {
                    heading += Float(random.normal() * 0.7)
                    point += SIMD2(cos(heading), sin(heading)) * 0.11
                    path.append(point)
                }
                vessels.append(path)
            }
            self.vessels = vessels
            noiseSeed = UInt32(truncatingIfNeeded: random.next())
        }

        func borderRadius(_ theta: Float) -> Float {
            var position = theta / (2 * .pi) * Float(Self.borderSamples)
            if position < 0 { position += Float(Self.borderSamples) }
            let i = min(Int(position), Self.borderSamples - 1)
            let f = position - Float(i)
            return border[i] + (border[(i + 1) % Self.borderSamples] - border[i]) * f
        }
    }

    static func smoothstep(_ e0: Float, _ e1: Float, _ x: Float) -> Float {
        let t = min(1, max(0, (x - e0) / (e1 - e0)))
        return t * t * (3 - 2 * t)
    }

    static func draw(look: LesionLook, skinType: Int, size: Int, random: inout CohortRandom) -> RGBImage {
        let s = Float(size)
        let app = look.appearance
        // Framing: a field of view of 14–30 mm (PAD-UFES-20's photographs are close-ups), widened so that the lesion
        // fills at most 80% of the frame.
        let fieldOfView = max(Float(exp(random.uniform(log(14), log(30)))), look.diameter1 / 0.8)
        let pixelsPerMM = s / fieldOfView
        let a = look.diameter1 / 2 * pixelsPerMM, b = look.diameter2 / 2 * pixelsPerMM
        let reach = a * 1.5
        let margin = max(0, s / 2 - reach)
        let cx = s / 2 + Float(random.uniform(-1, 1)) * min(margin, 0.12 * s)
        let cy = s / 2 + Float(random.uniform(-1, 1)) * min(margin, 0.12 * s)
        let phi = look.rotation + Float(random.uniform(-0.3, 0.3))
        let cosPhi = cos(phi), sinPhi = sin(phi)

        var skin = Appearance.skinTones[skinType - 1]
        let toneShift = Float(0.04 * random.normal())
        for c in 0..<3 { skin[c] = min(1, max(0.05, skin[c] * (1 + toneShift + Float(0.015 * random.normal())))) }
        // Pigment and redness look darker and duller on darker skin.
        let luma = { (c: SIMD3<Float>) -> Float in 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] }
        let lesionFactor = min(1.04, 0.5 + 0.5 * luma(skin) / luma(Appearance.skinTones[1]))
        let haloColour = skin * SIMD3<Float>(1.0, 0.78, 0.76)

        let noise = ValueNoise(seed: look.noiseSeed)
        let skinNoise = ValueNoise(seed: UInt32(truncatingIfNeeded: random.next()))
        let skinFrequency = 1 / max(1.5, s / 60)
        let textureFrequency = app.textureFrequency

        var buffer = [Float](repeating: 0, count: size * size * 3)
        buffer.withUnsafeMutableBufferPointer { pixels in
            for y in 0..<size {
                for x in 0..<size {
                    let px = Float(x) + 0.5 - cx, py = Float(y) + 0.5 - cy
                    let u = (px * cosPhi + py * sinPhi) / a
                    let v = (-px * sinPhi + py * cosPhi) / b
                    let rho = (u * u + v * v).squareRoot()
                    let t = rho / look.borderRadius(atan2(v, u))
                    let grain = skinNoise.fbm(Float(x) * skinFrequency, Float(y) * skinFrequency)
                    var colour = skin * (1 + 0.06 * (grain - 0.5))
                    if app.halo > 0.01 {
                        colour = colour + (haloColour - colour) * (app.halo * (1 - smoothstep(1, 1.7 + app.edge, t)))
                    }
                    let alpha = 1 - smoothstep(1 - app.edge, 1 + app.edge, t)
                    if alpha > 0.001 {
                        let blotch = noise.fbm(u * 2.2 + 11.3, v * 2.2 + 7.1)
                        let third = noise.fbm(u * 3.1 + 31.7, v * 3.1 + 23.9)
                        var c = app.colour1
                        c = c + (app.colour2 - c) * (app.variegation * smoothstep(0.3, 0.7, blotch))
                        c = c + (app.colour3 - c) * min(1, app.thirdAmount * smoothstep(0.5, 0.7, third) * 1.6)
                        if app.rim > 0.01 {
                            let ring = app.rim * exp(-((t - 0.82) * (t - 0.82)) / 0.015)
                            c = c + (SIMD3<Float>(0.95, 0.88, 0.86) - c) * min(1, ring * 0.6)
                        }
                        if app.crust > 0.01 {
                            let radius = app.crust * (0.8 + 0.4 * third)
                            c = c + (app.crustColour - c) * smoothstep(radius, radius * 0.6, t)
                        }
                        if app.texture > 0.01 {
                            let pattern = noise.sample(u * textureFrequency + 3.7, v * textureFrequency + 9.2)
                            c = c * (1 - min(0.8, app.texture) * smoothstep(0.55, 0.72, pattern))
                        }
                        if app.scale > 0.01 {
                            let flakes = noise.sample(u * 11 + 51.3, v * 11 + 17.9)
                            c = c + (SIMD3<Float>(0.93, 0.90, 0.82) - c) * min(1, app.scale * smoothstep(0.55, 0.8, flakes) * 1.5)
                        }
                        colour = colour + (c * lesionFactor - colour) * alpha
                    }
                    let index = (y * size + x) * 3
                    pixels[index] = colour[0]; pixels[index + 1] = colour[1]; pixels[index + 2] = colour[2]
                }
            }
        }

        // Vessels (telangiectasia) inside the lesion, in the lesion's frame.
        let toPixels = { (p: SIMD2<Float>) -> SIMD2<Float> in
            let ux = p.x * a, vy = p.y * b
            return SIMD2(cx + ux * cosPhi - vy * sinPhi, cy + ux * sinPhi + vy * cosPhi)
        }
        let vesselWidth = max(0.7, s / 224 * 1.1)
        for path in look.vessels {
            drawPolyline(path.map(toPixels), width: vesselWidth, colour: SIMD3(0.68, 0.16, 0.17) * lesionFactor, opacity: 0.75,
                         into: &buffer, size: size)
        }
        // Hairs across the photograph.
        let hairs = random.chance(0.2) ? 1 + random.below(3) : 0
        for _ in 0..<hairs {
            var point = SIMD2<Float>(Float(random.uniform(0, Double(s))), Float(random.uniform(0, Double(s))))
            var heading = Float(random.uniform(0, 2 * Double.pi))
            var path = [point]
            for _ in 0..<6 {
                heading += Float(random.normal() * 0.2)
                point += SIMD2(cos(heading), sin(heading)) * (s / 20)
                path.append(point)
            }
            drawPolyline(path, width: max(0.6, s / 224 * Float(random.uniform(0.7, 1.4))), colour: skin * 0.25, opacity: 0.85,
                         into: &buffer, size: size)
        }

        // The photograph: lighting gradient, vignetting, exposure, white balance.
        let lightAngle = Float(random.uniform(0, 2 * Double.pi)), lightStrength = Float(random.uniform(0, 0.35))
        let lx = cos(lightAngle) * lightStrength / s, ly = sin(lightAngle) * lightStrength / s
        let vignette = Float(random.uniform(0, 0.35)) / (s * s / 2)
        let exposure = Float(random.uniform(0.85, 1.1))
        let balance = SIMD3<Float>(Float(random.uniform(0.95, 1.05)), 1, Float(random.uniform(0.93, 1.05)))
        buffer.withUnsafeMutableBufferPointer { pixels in
            for y in 0..<size {
                for x in 0..<size {
                    let dx = Float(x) + 0.5 - s / 2, dy = Float(y) + 0.5 - s / 2
                    let gain = exposure * (1 + dx * lx + dy * ly) * (1 - vignette * (dx * dx + dy * dy))
                    let index = (y * size + x) * 3
                    for c in 0..<3 { pixels[index + c] *= gain * balance[c] }
                }
            }
        }
        let blurRadius = Int(random.uniform(0, 2) * Double(s) / 224)
        if blurRadius > 0 { boxBlur(&buffer, size: size, radius: blurRadius) }

        // Sensor noise and 8-bit quantisation.
        let sigma = Float(random.uniform(0.5, 2))  // in 8-bit steps (more makes the PNGs slow to compress)
        let noiseState = UInt32(truncatingIfNeeded: random.next())
        var bytes = [UInt8](repeating: 0, count: buffer.count)
        for i in 0..<buffer.count {
            var h = UInt32(truncatingIfNeeded: i) &* 0x9E37_79B1 ^ noiseState
            h = (h ^ (h >> 15)) &* 0x2C1B_3C6D
            h ^= h >> 12
            let uniform = Float(h >> 8) * (1 / 16_777_216) - 0.5  // [−0.5, 0.5): sd 0.289
            let value = buffer[i] * 255 + uniform * sigma * 3.46
            bytes[i] = UInt8(min(255, max(0, value + 0.5)))  // rounds: the value is clamped to be non-negative
        }
        return RGBImage(width: size, height: size, samples: .uint8(bytes))
    }

    /// Blends an antialiased polyline of `width` pixels (coverage 1 within half the width, falling to 0 one pixel
    /// further) into the buffer.
    static func drawPolyline(_ points: [SIMD2<Float>], width: Float, colour: SIMD3<Float>, opacity: Float,
                             into buffer: inout [Float], size: Int) {
        let half = width / 2
        buffer.withUnsafeMutableBufferPointer { pixels in
            for (p, q) in zip(points, points.dropFirst()) {
                let x0 = max(0, Int((min(p.x, q.x) - half - 1).rounded(.down))), x1 = min(size - 1, Int((max(p.x, q.x) + half + 1).rounded(.up)))
                let y0 = max(0, Int((min(p.y, q.y) - half - 1).rounded(.down))), y1 = min(size - 1, Int((max(p.y, q.y) + half + 1).rounded(.up)))
                guard x0 <= x1, y0 <= y1 else { continue }
                let d = q - p
                let length2 = max(1e-6, (d * d).sum())
                for y in y0...y1 {
                    for x in x0...x1 {
                        let point = SIMD2<Float>(Float(x) + 0.5, Float(y) + 0.5)
                        let along = min(1, max(0, ((point - p) * d).sum() / length2))
                        let offset = point - (p + d * along)
                        let distance = (offset * offset).sum().squareRoot()
                        let coverage = min(1, max(0, half + 1 - distance)) * opacity
                        guard coverage > 0 else { continue }
                        let index = (y * size + x) * 3
                        for c in 0..<3 { pixels[index + c] += (colour[c] - pixels[index + c]) * coverage }
                    }
                }
            }
        }
    }

    /// Two passes of a (2·radius + 1)-wide box filter along rows and then columns (close to a Gaussian), edges
    /// clamped.
    static func boxBlur(_ buffer: inout [Float], size: Int, radius: Int) {
        var scratch = [Float](repeating: 0, count: buffer.count)
        let norm = 1 / Float(2 * radius + 1)
        for _ in 0..<2 {
            for pass in 0..<2 {
                let (stride, step) = pass == 0 ? (size * 3, 3) : (3, size * 3)  // lines and the step along a line
                buffer.withUnsafeBufferPointer { source in
                    scratch.withUnsafeMutableBufferPointer { target in
                        for line in 0..<size {
                            for c in 0..<3 {
                                let base = line * stride + c
                                var sum: Float = 0
                                for k in -radius...radius { sum += source[base + min(size - 1, max(0, k)) * step] }
                                for i in 0..<size {
                                    target[base + i * step] = sum * norm
                                    sum += source[base + min(size - 1, i + radius + 1) * step] - source[base + max(0, i - radius) * step]
                                }
                            }
                        }
                    }
                }
                swap(&buffer, &scratch)
            }
        }
    }
}

/// Value noise: random values on the integer lattice (a hash of the lattice point and a seed), interpolated with
/// a smoothstep; `fbm` adds a second octave at twice the frequency.
struct ValueNoise: Sendable {
    let seed: UInt32

    @inline(__always) func lattice(_ i: Int32, _ j: Int32) -> Float {
        var h = (UInt32(bitPattern: i) &* 0x8DA6_B343) ^ (UInt32(bitPattern: j) &* 0xD816_3841) ^ seed
        h = (h ^ (h >> 13)) &* 0x5BD1_E995
        h ^= h >> 15
        return Float(h >> 8) * (1 / 16_777_216)
    }

    /// In [0, 1).
    @inline(__always) func sample(_ x: Float, _ y: Float) -> Float {
        let fx = x.rounded(.down), fy = y.rounded(.down)
        let i = Int32(fx), j = Int32(fy)
        var tx = x - fx, ty = y - fy
        tx = tx * tx * (3 - 2 * tx)
        ty = ty * ty * (3 - 2 * ty)
        let top = lattice(i, j) + (lattice(i + 1, j) - lattice(i, j)) * tx
        let bottom = lattice(i, j + 1) + (lattice(i + 1, j + 1) - lattice(i, j + 1)) * tx
        return top + (bottom - top) * ty
    }

    @inline(__always) func fbm(_ x: Float, _ y: Float) -> Float {
        (2 * sample(x, y) + sample(2 * x + 17.1, 2 * y + 5.3)) / 3
    }
}
