// HDF5 for Swift. The importer cannot see HDF5's macros (they call H5open() or cast), so each one a Swift
// caller needs is a static inline function here. Nothing else belongs in this file.
#ifndef PRIMA_CHDF5_SHIM_H
#define PRIMA_CHDF5_SHIM_H
#include <hdf5.h>

static inline hid_t prima_H5P_DEFAULT(void) { return H5P_DEFAULT; }
static inline hid_t prima_H5S_ALL(void) { return H5S_ALL; }
static inline hid_t prima_H5E_DEFAULT(void) { return H5E_DEFAULT; }
static inline hid_t prima_H5P_FILE_ACCESS(void) { return H5P_FILE_ACCESS; }
static inline hid_t prima_H5P_FILE_CREATE(void) { return H5P_FILE_CREATE; }
static inline hid_t prima_H5P_DATASET_CREATE(void) { return H5P_DATASET_CREATE; }
static inline hid_t prima_H5P_GROUP_CREATE(void) { return H5P_GROUP_CREATE; }
static inline hid_t prima_H5P_LINK_CREATE(void) { return H5P_LINK_CREATE; }
static inline hid_t prima_H5P_OBJECT_COPY(void) { return H5P_OBJECT_COPY; }
static inline unsigned prima_H5F_ACC_RDONLY(void) { return H5F_ACC_RDONLY; }
static inline unsigned prima_H5F_ACC_RDWR(void) { return H5F_ACC_RDWR; }
static inline unsigned prima_H5F_ACC_TRUNC(void) { return H5F_ACC_TRUNC; }
static inline unsigned prima_H5F_ACC_EXCL(void) { return H5F_ACC_EXCL; }

static inline hid_t prima_H5T_IEEE_F32LE(void) { return H5T_IEEE_F32LE; }
static inline hid_t prima_H5T_IEEE_F64LE(void) { return H5T_IEEE_F64LE; }
static inline hid_t prima_H5T_STD_I8LE(void) { return H5T_STD_I8LE; }
static inline hid_t prima_H5T_STD_U8LE(void) { return H5T_STD_U8LE; }
static inline hid_t prima_H5T_STD_I16LE(void) { return H5T_STD_I16LE; }
static inline hid_t prima_H5T_STD_U16LE(void) { return H5T_STD_U16LE; }
static inline hid_t prima_H5T_STD_I32LE(void) { return H5T_STD_I32LE; }
static inline hid_t prima_H5T_STD_U32LE(void) { return H5T_STD_U32LE; }
static inline hid_t prima_H5T_STD_I64LE(void) { return H5T_STD_I64LE; }
static inline hid_t prima_H5T_STD_U64LE(void) { return H5T_STD_U64LE; }
static inline hid_t prima_H5T_C_S1(void) { return H5T_C_S1; }
static inline hid_t prima_H5T_NATIVE_FLOAT(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t prima_H5T_NATIVE_DOUBLE(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t prima_H5T_NATIVE_INT64(void) { return H5T_NATIVE_INT64; }
static inline size_t prima_H5T_VARIABLE(void) { return H5T_VARIABLE; }
static inline haddr_t prima_HADDR_UNDEF(void) { return HADDR_UNDEF; }

/// Silences HDF5's automatic error-stack printing; the Swift layer reports errors itself.
static inline herr_t prima_H5_silence_errors(void) { return H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }
#endif
