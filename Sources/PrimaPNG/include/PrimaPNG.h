// PNG decoding and encoding through libpng, with every libpng error (a longjmp) caught inside C: no longjmp ever
// crosses a Swift frame. Swift reaches this through PrimaImage's PNGDecoder and PNGEncoder; nothing else should
// call it.
#ifndef PRIMA_PNG_H
#define PRIMA_PNG_H
#include <stddef.h>
#include <stdint.h>

/// A decoded image: interleaved RGB, row-major, `height` rows of `width` pixels, 3 samples per pixel.
/// `sample_bytes` is 1 (8-bit samples) or 2 (16-bit samples in host byte order). Owned by the caller,
/// released with prima_png_free.
typedef struct {
    uint32_t width;
    uint32_t height;
    uint32_t sample_bytes;
    /// What the file declared (IHDR): colour type 0/2/3/4/6, bit depth 1/2/4/8/16, interlace 0/1.
    uint8_t color_type;
    uint8_t bit_depth;
    uint8_t interlaced;
    uint8_t *pixels;
    size_t byte_count;
} prima_png_image;

/// Decodes the PNG file held in `data[0..<size]` to RGB: palette entries looked up, grey replicated, 1/2/4-bit
/// grey scaled to 8 bits, alpha and tRNS discarded (not composited), no gamma correction, Adam7 de-interlaced.
/// Refuses before allocating any pixel memory an image wider or taller than `max_side`, with more than
/// `max_pixels` pixels, or whose decoded RGB samples (width × height × 3 × 1 or 2 bytes) exceed `max_bytes`. Every CRC (critical and ancillary chunks) and the zlib checksum are verified, and the
/// whole file up to IEND is read.
///
/// Returns 0 and fills `out`, or returns -1 and writes a one-line, NUL-terminated reason (without the file name)
/// into `message[0..<message_size]`; `out` is then left empty.
int prima_png_decode(const uint8_t *data, size_t size, uint32_t max_side, uint64_t max_pixels, uint64_t max_bytes,
                     prima_png_image *out, char *message, size_t message_size);

/// Releases the pixels of an image filled by prima_png_decode (safe on an empty image).
void prima_png_free(prima_png_image *image);

/// An encoded PNG file in memory, `bytes[0..<size]`. Owned by the caller, released with prima_png_buffer_free.
typedef struct {
    uint8_t *bytes;
    size_t size;
} prima_png_buffer;

/// Encodes `height` rows of `width` pixels, interleaved 8-bit RGB samples, row-major without padding
/// (`width * height * 3` bytes), as a PNG file: colour type 2, bit depth 8, not interlaced, zlib level 6 with
/// libpng's adaptive row filters, and only the IHDR, IDAT and IEND chunks (no tIME or text), so the same pixels
/// always give the same bytes with the same libpng and zlib.
///
/// Returns 0 and fills `out`, or returns -1 and writes a one-line, NUL-terminated reason into
/// `message[0..<message_size]`; `out` is then left empty.
int prima_png_encode(const uint8_t *pixels, uint32_t width, uint32_t height, prima_png_buffer *out, char *message,
                     size_t message_size);

/// prima_png_encode with zlib level `level` (1 fastest … 9 smallest; 6 is prima_png_encode's) instead of 6, for
/// writers of many images where compression time dominates. The same pixels and level give the same bytes.
int prima_png_encode_level(const uint8_t *pixels, uint32_t width, uint32_t height, int level, prima_png_buffer *out,
                           char *message, size_t message_size);

/// Releases a file filled by prima_png_encode (safe on an empty buffer).
void prima_png_buffer_free(prima_png_buffer *buffer);

#endif
