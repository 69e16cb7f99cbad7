// PNG encoding through libpng into a memory buffer, with libpng's errors (a longjmp) caught inside C, as in
// png_decode.c: no longjmp ever crosses a Swift frame. Swift reaches this through PrimaImage's PNGEncoder.
#include "PrimaPNG.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/// The growing in-memory file libpng writes to, and where the first error message goes.
typedef struct {
    uint8_t *bytes;
    size_t size;
    size_t capacity;
    char *message;
    size_t message_size;
} writer;

static void set_message(writer *w, const char *format, const char *detail) {
    if (w->message[0] == 0) snprintf(w->message, w->message_size, format, detail);
}

static void on_error(png_structp png, png_const_charp text) {
    set_message(png_get_error_ptr(png), "cannot encode PNG: %s", text);
    png_longjmp(png, 1);
}

/// libpng only warns about settings it adjusts; the settings below are fixed, so there is nothing to report.
static void on_warning(png_structp png, png_const_charp text) {
    (void)png;
    (void)text;
}

static void on_write(png_structp png, png_bytep data, size_t count) {
    writer *w = png_get_io_ptr(png);
    if (count > w->capacity - w->size) {
        size_t capacity = w->capacity < 4096 ? 4096 : w->capacity;
        while (count > capacity - w->size) {
            if (capacity > SIZE_MAX / 2) png_error(png, "the encoded file outgrows memory");
            capacity *= 2;
        }
        uint8_t *grown = realloc(w->bytes, capacity);
        if (grown == NULL) png_error(png, "out of memory for the encoded file");
        w->bytes = grown;
        w->capacity = capacity;
    }
    memcpy(w->bytes + w->size, data, count);
    w->size += count;
}

static void on_flush(png_structp png) { (void)png; }

int prima_png_encode(const uint8_t *pixels, uint32_t width, uint32_t height, prima_png_buffer *out, char *message,
                     size_t message_size) {
    return prima_png_encode_level(pixels, width, height, 6, out, message, message_size);
}

int prima_png_encode_level(const uint8_t *pixels, uint32_t width, uint32_t height, int level, prima_png_buffer *out,
                           char *message, size_t message_size) {
    memset(out, 0, sizeof *out);
    if (message_size == 0) return -1;
    message[0] = 0;
    // PNG's own limit is 2^31 - 1 per side; the row pointers below must fit in memory.
    if (width == 0 || height == 0 || width > 0x7FFFFFFFu || height > 0x7FFFFFFFu) {
        snprintf(message, message_size, "cannot encode PNG: a %u x %u image", width, height);
        return -1;
    }
    // On the heap, not a local: the callbacks change it after setjmp, and a local changed there is indeterminate
    // after the longjmp (C11 7.13.2.1); `w` itself is never reassigned.
    writer *const w = calloc(1, sizeof *w);
    if (w == NULL) {
        snprintf(message, message_size, "cannot encode PNG: out of memory");
        return -1;
    }
    w->message = message;
    w->message_size = message_size;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, w, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (png == NULL || info == NULL) {
        png_destroy_write_struct(png ? &png : NULL, NULL);
        free(w);
        snprintf(message, message_size, "cannot encode PNG: libpng could not allocate its writer");
        return -1;
    }
    // Assigned after setjmp and freed after a longjmp, so volatile (C11 7.13.2.1).
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(rows);
        png_destroy_write_struct(&png, &info);
        free(w->bytes);
        free(w);
        if (message[0] == 0) snprintf(message, message_size, "cannot encode PNG");
        return -1;
    }

    png_set_write_fn(png, w, on_write, on_flush);
    // Fixed settings, so the same pixels always give the same bytes (with the same libpng and zlib): zlib level 6
    // (its default) unless the caller asks for another, libpng's default strategy and window for filtered rows,
    // every row filter chosen by libpng's per-row heuristic (deterministic). No tIME, tEXt or other ancillary
    // chunk is written: IHDR, IDAT, IEND.
    png_set_compression_level(png, level < 1 ? 1 : level > 9 ? 9 : level);
    png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_ALL_FILTERS);
    png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_BASE, PNG_FILTER_TYPE_BASE);
    png_write_info(png, info);

    size_t row_bytes = (size_t)width * 3;
    rows = malloc(sizeof(png_bytep) * height);
    if (rows == NULL) png_error(png, "out of memory for the row pointers");
    // libpng takes non-const rows but does not modify them when no transformation is set.
    for (uint32_t y = 0; y < height; y++) rows[y] = (png_bytep)(uintptr_t)(pixels + (size_t)y * row_bytes);
    png_write_image(png, rows);
    png_write_end(png, NULL);

    free(rows);
    png_destroy_write_struct(&png, &info);
    out->bytes = w->bytes;
    out->size = w->size;
    free(w);
    return 0;
}

void prima_png_buffer_free(prima_png_buffer *buffer) {
    free(buffer->bytes);
    buffer->bytes = NULL;
    buffer->size = 0;
}
