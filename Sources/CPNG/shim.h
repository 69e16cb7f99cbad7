// libpng for Swift.
#ifndef PRIMA_CPNG_SHIM_H
#define PRIMA_CPNG_SHIM_H
#include <png.h>
static inline const char *prima_png_header_version(void) { return PNG_LIBPNG_VER_STRING; }
#endif
