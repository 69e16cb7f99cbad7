/// The bound on the image encoder's input (Formats/prima-checkpoint.md §3.4): the patch tokens of one image.
///
/// DINOv3 runs at 224–1024 pixels a side, 196–4096 patch tokens at patch 16. Attention costs O(T²) time in the
/// tokens, so a preprocessing size of 2048 × 2048 at patch 8 (65,536 tokens) would keep a diagnosis running for
/// many minutes; the limit is checked when a checkpoint is read (its `preprocessing/` size), at import (the
/// preprocessor_config.json size) and before the encoder runs (an image kept at its own size).
public enum ImageEncoderLimits {
    /// Most patch tokens, (H / p) · (W / p), of one image: 1024 × 1024 pixels at patch 16.
    public static let maxPatchTokens = 4096

    /// Why an image of `height` × `width` pixels cannot be encoded with patch size `patchSize`, or nil if it can:
    /// each side a positive multiple of the patch size, at most ``maxPatchTokens`` patches in all.
    public static func problem(height: Int, width: Int, patchSize: Int) -> String? {
        guard height >= patchSize, width >= patchSize, height % patchSize == 0, width % patchSize == 0 else {
            return "\(height)x\(width) pixels: each side must be a positive multiple of the patch size \(patchSize)"
        }
        let (tokens, overflow) = (height / patchSize).multipliedReportingOverflow(by: width / patchSize)
        guard !overflow, tokens <= maxPatchTokens else {
            return "\(height)x\(width) pixels at patch size \(patchSize) make \(overflow ? "too many" : String(tokens)) patch tokens, above the image encoder's limit of \(maxPatchTokens)"
        }
        return nil
    }
}
