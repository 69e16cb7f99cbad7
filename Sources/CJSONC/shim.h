// json-c for Swift.
#ifndef PRIMA_CJSONC_SHIM_H
#define PRIMA_CJSONC_SHIM_H
#include <json.h>
#endif
