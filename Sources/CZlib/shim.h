// zlib for Swift: the checkpoint's per-tensor CRC-32 (zlib1g-dev comes with libhdf5-dev and libpng-dev).
#ifndef PRIMA_CZLIB_SHIM_H
#define PRIMA_CZLIB_SHIM_H
#include <zlib.h>
#endif
