// Oniguruma for Swift, used only by the differential test of the tokenizer's regex matcher (Docs/DEVELOPERS.md,
// "The tokenizer's regex matcher"). The encoding and syntax are macros over globals; these functions name them.
#ifndef PRIMA_CONIGURUMA_SHIM_H
#define PRIMA_CONIGURUMA_SHIM_H
#include <oniguruma.h>
static inline OnigEncoding prima_onig_encoding_utf8(void) { return ONIG_ENCODING_UTF8; }
static inline OnigSyntaxType *prima_onig_syntax_default(void) { return ONIG_SYNTAX_DEFAULT; }
#endif
