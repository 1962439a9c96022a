/*
 * pngwrite.h - 8-bit PNGs written with zlib alone, byte for byte as libpng
 * 1.6 writes them with the settings gmserve used (run-length deflate, the
 * adaptive filter, or Up alone), at a fraction of the cost.
 *
 * libpng set up a deflate stream of its default memory level for every
 * image: about 140 KiB allocated and a 64 KiB hash table zeroed, for a
 * 28 x 28 sample whose whole stream is 812 bytes. Here the stream gets the
 * smallest memory level whose symbol buffer holds the whole image, so that
 * no block is cut where libpng's would not be, and the run-length strategy
 * never reads the hash. The rest is libpng's own arithmetic: the filter
 * chosen per row by the least sum of absolute (signed) bytes, ties to the
 * lower filter type, Sub and the filters that read the row above left out
 * of one-pixel-wide and one-row images; the window libpng would claim for
 * that image size, the zlib header it rewrites for it, and IDAT chunks of
 * 8192 bytes. tests/test_png_write.c holds both writers to the same bytes.
 */
#ifndef GM_PNGWRITE_H
#define GM_PNGWRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Writes img (h rows of w * c bytes, c = 1 gray, 2 gray+alpha, 3 RGB,
 * 4 RGBA, 8 bits each) as a PNG: every row Up-filtered when up_only, else
 * the adaptive filter; text (may be NULL) as a tEXt chunk "Description".
 * *out is malloc'd (caller frees). Returns false when out of memory, or
 * for a size PNG or zlib cannot take (a side under 1, rows of 2^30 bytes
 * or more, 2^30 rows or more), before reading img. */
bool gm_png_write_plain(const uint8_t *img, int h, int w, int c, bool up_only, const char *text, uint8_t **out,
                        size_t *out_len);

#endif
