/*
 * pngplain.h - the common PNG decoded straight with zlib, ahead of libpng.
 *
 * Almost every PNG a client sends is what an encoder writes by default:
 * 8-bit samples in the model's own channel layout, not interlaced, IHDR
 * then IDAT chunks. For those, libpng's setup (its structs, transforms and
 * row machinery) costs more than the inflate itself; this path walks the
 * chunks, checks their CRCs, inflates into one buffer and undoes the row
 * filters. Anything else, and anything at all that is off (a bad CRC, a
 * short or long stream, an unknown critical chunk, tRNS), is left to
 * libpng, so every refusal keeps libpng's status and message.
 */
#ifndef GM_PNGPLAIN_H
#define GM_PNGPLAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decodes data (len bytes, the 8-byte signature checked, every chunk known
 * to fit in len) into out, h x w x c floats in [0, 1], and returns true; or
 * returns false, out untouched or partly written, when the file is not of
 * the plain kind or not perfectly formed. */
bool gm_png_decode_plain(const uint8_t *data, size_t len, int h, int w, int c, float *out);

#endif
