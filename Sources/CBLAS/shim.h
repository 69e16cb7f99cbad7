// OpenBLAS's CBLAS interface for Swift.
#ifndef PRIMA_CBLAS_SHIM_H
#define PRIMA_CBLAS_SHIM_H
#include <cblas.h>
#endif
