// libpng reports errors by calling an error callback that must not return: libpng expects it to longjmp back to
// a setjmp in the caller. A longjmp through Swift frames skips Swift's cleanup (releases, defers), so the setjmp,
// the longjmp and every libpng call live in this file; Swift sees a return code and a message.
#include "PrimaPNG.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/// The in-memory file libpng reads from, and where the first error message goes.
typedef struct {
    const uint8_t *data;
    size_t size;
    size_t position;
    char *message;
    size_t message_size;
    /// Set by the warning callback when a warning means the image data is damaged (see on_warning).
    int damaged;
} reader;

static void set_message(reader *r, const char *format, const char *detail) {
    if (r->message[0] == 0) snprintf(r->message, r->message_size, format, detail);
}

static void on_error(png_structp png, png_const_charp text) {
    set_message(png_get_error_ptr(png), "corrupt PNG: %s", text);
    png_longjmp(png, 1);
}

/// Warnings are silent, except the zlib checksum: libpng reports an Adler-32 mismatch found after the last row
/// as a "benign" error (a warning by default), but it means the image data is not what was written.
static void on_warning(png_structp png, png_const_charp text) {
    reader *r = png_get_error_ptr(png);
    if (strstr(text, "incorrect data check") != NULL || strstr(text, "invalid distance") != NULL) {
        set_message(r, "corrupt PNG: %s", text);
        r->damaged = 1;
    }
}

static void on_read(png_structp png, png_bytep destination, size_t count) {
    reader *r = png_get_io_ptr(png);
    if (count > r->size - r->position) {
        char detail[96];
        snprintf(detail, sizeof detail, "%zu bytes", r->size);
        set_message(r, "truncated PNG: the file ends after %s, before its IEND chunk", detail);
        png_error(png, "truncated");
    }
    memcpy(destination, r->data + r->position, count);
    r->position += count;
}

static uint32_t read_u32be(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/// What a file that is not a PNG probably is, from its first bytes (for the error message only).
static const char *sniff(const uint8_t *data, size_t size) {
    if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return " (it looks like a JPEG file)";
    if (size >= 6 && (memcmp(data, "GIF87a", 6) == 0 || memcmp(data, "GIF89a", 6) == 0)) return " (it looks like a GIF file)";
    if (size >= 2 && data[0] == 'B' && data[1] == 'M') return " (it looks like a BMP file)";
    if (size >= 12 && memcmp(data, "RIFF", 4) == 0 && memcmp(data + 8, "WEBP", 4) == 0) return " (it looks like a WebP file)";
    if (size >= 4 && (memcmp(data, "II*\0", 4) == 0 || memcmp(data, "MM\0*", 4) == 0)) return " (it looks like a TIFF file)";
    return "";
}

/// Signature and IHDR size checks on the raw bytes, before libpng allocates anything for the image.
static int precheck(const uint8_t *data, size_t size, uint32_t max_side, uint64_t max_pixels, uint64_t max_bytes,
                    reader *r) {
    static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    if (size == 0) {
        set_message(r, "%s", "not a PNG file: the file is empty");
        return -1;
    }
    if (size < 8 || memcmp(data, signature, 8) != 0) {
        set_message(r, "not a PNG file: the first bytes are not the PNG signature%s", sniff(data, size));
        return -1;
    }
    // The first chunk must be IHDR (13 bytes: width, height, bit depth, ...); libpng reports a malformed or
    // truncated one itself. Every byte read below lies inside the 8-byte header and the 13-byte payload.
    if (size >= 8 + 8 + 13 && read_u32be(data + 8) == 13 && memcmp(data + 12, "IHDR", 4) == 0) {
        uint32_t width = read_u32be(data + 16), height = read_u32be(data + 20);
        char detail[160];
        if (width == 0 || height == 0) {
            snprintf(detail, sizeof detail, "%u x %u", width, height);
            set_message(r, "corrupt PNG: IHDR gives an empty image (%s pixels)", detail);
            return -1;
        }
        if (width > max_side || height > max_side) {
            snprintf(detail, sizeof detail, "%u x %u pixels; the limit is %u pixels per side", width, height, max_side);
            set_message(r, "image too large: %s", detail);
            return -1;
        }
        if ((uint64_t)width * height > max_pixels) {
            snprintf(detail, sizeof detail, "%u x %u = %llu pixels; the limit is %llu pixels", width, height,
                     (unsigned long long)width * height, (unsigned long long)max_pixels);
            set_message(r, "image too large: %s", detail);
            return -1;
        }
        // Decoded to 3 samples per pixel of 1 byte, or 2 for 16-bit files (IHDR byte 8 is the bit depth).
        uint64_t decoded = (uint64_t)width * height * 3 * (data[24] == 16 ? 2 : 1);
        if (decoded > max_bytes) {
            snprintf(detail, sizeof detail, "%u x %u pixels at bit depth %u decode to %llu bytes; the limit is %llu bytes",
                     width, height, data[24], (unsigned long long)decoded, (unsigned long long)max_bytes);
            set_message(r, "image too large: %s", detail);
            return -1;
        }
    }
    // Every chunk's declared length must fit in the bytes that follow it, up to IEND: libpng allocates a chunk's
    // length before reading it, so a 56-byte file declaring a 2 GiB tEXt chunk would otherwise cost 2 GiB.
    size_t offset = 8;
    for (;;) {
        char detail[64];
        if (size - offset < 12) {
            snprintf(detail, sizeof detail, "%zu bytes", size);
            set_message(r, "truncated PNG: the file ends after %s, before its IEND chunk", detail);
            return -1;
        }
        uint32_t length = read_u32be(data + offset);
        if (length > 0x7FFFFFFFu) {
            snprintf(detail, sizeof detail, "a chunk at byte %zu declares %u bytes (the PNG limit is 2^31 - 1)", offset, length);
            set_message(r, "corrupt PNG: %s", detail);
            return -1;
        }
        if ((size_t)length > size - offset - 12) {
            snprintf(detail, sizeof detail, "%zu bytes", size);
            set_message(r, "truncated PNG: the file ends after %s, before its IEND chunk", detail);
            return -1;
        }
        if (memcmp(data + offset + 4, "IEND", 4) == 0) break;
        offset += 12 + (size_t)length;
    }
    return 0;
}

int prima_png_decode(const uint8_t *data, size_t size, uint32_t max_side, uint64_t max_pixels, uint64_t max_bytes,
                     prima_png_image *out, char *message, size_t message_size) {
    memset(out, 0, sizeof *out);
    if (message_size == 0) return -1;
    message[0] = 0;
    reader r = {data, size, 0, message, message_size, 0};
    if (precheck(data, size, max_side, max_pixels, max_bytes, &r) != 0) return -1;

    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &r, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (png == NULL || info == NULL) {
        png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
        set_message(&r, "%s", "libpng could not allocate its reader");
        return -1;
    }
    // Assigned after setjmp and freed after a longjmp, so volatile (C11 7.13.2.1).
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(pixels);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        // `r` was modified after setjmp, so only the caller's buffer is read here.
        if (message[0] == 0) snprintf(message, message_size, "corrupt PNG");
        return -1;
    }

    png_set_read_fn(png, &r, on_read);
    // A CRC error is fatal in every chunk, ancillary ones included (libpng's default discards those silently).
    png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
    png_set_user_limits(png, max_side, max_side);
    png_set_chunk_malloc_max(png, 64u << 20);  // no ancillary chunk (iCCP, zTXt, ...) may inflate past 64 MiB
    png_read_info(png, info);

    png_uint_32 width = 0, height = 0;
    int bit_depth = 0, color_type = 0, interlace = 0;
    png_get_IHDR(png, info, &width, &height, &bit_depth, &color_type, &interlace, NULL, NULL);
    if ((uint64_t)width * height > max_pixels) png_error(png, "image too large");  // precheck saw the same IHDR

    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
    // Alpha, and the alpha a tRNS chunk would add, is dropped: not composited onto any background.
    if ((color_type & PNG_COLOR_MASK_ALPHA) != 0 || png_get_valid(png, info, PNG_INFO_tRNS) != 0) png_set_strip_alpha(png);
    uint16_t probe = 1;
    if (bit_depth == 16 && *(uint8_t *)&probe == 1) png_set_swap(png);  // PNG is big endian; hand Swift host order
    (void)png_set_interlace_handling(png);
    png_read_update_info(png, info);

    uint32_t sample_bytes = png_get_bit_depth(png, info) == 16 ? 2 : 1;
    size_t row_bytes = (size_t)width * 3 * sample_bytes;
    if (png_get_channels(png, info) != 3 || png_get_rowbytes(png, info) != row_bytes) {
        png_error(png, "unexpected layout after the RGB transformations");
    }
    if ((uint64_t)row_bytes * height > max_bytes) png_error(png, "image too large");  // precheck saw the same IHDR
    pixels = malloc(row_bytes * height);
    rows = malloc(sizeof(png_bytep) * height);
    if (pixels == NULL || rows == NULL) png_error(png, "out of memory for the pixels");
    for (png_uint_32 y = 0; y < height; y++) rows[y] = pixels + (size_t)y * row_bytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);  // the chunks after the image data, through IEND, with their CRCs
    if (r.damaged) png_error(png, "damaged image data");

    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    out->width = width;
    out->height = height;
    out->sample_bytes = sample_bytes;
    out->color_type = (uint8_t)color_type;
    out->bit_depth = (uint8_t)bit_depth;
    out->interlaced = interlace != PNG_INTERLACE_NONE;
    out->pixels = pixels;
    out->byte_count = row_bytes * height;
    return 0;
}

void prima_png_free(prima_png_image *image) {
    free(image->pixels);
    image->pixels = NULL;
    image->byte_count = 0;
}
