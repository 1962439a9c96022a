/*
 * pngio.h - images in and out of the API as PNG, on memory buffers: read
 * through libpng (pngplain.h first), written by pngwrite.h.
 *
 * Decoding accepts any colour type and bit depth and converts to the model's
 * channels (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) at 8 bits; the declared size
 * is checked against the model's before any pixel memory is allocated, every
 * chunk must fit in the buffer before libpng reads any, chunks the pixels do
 * not need (text, ICC profiles) are skipped unread, and libpng's own limits
 * are lowered, so that a hostile file cannot make it allocate more than its
 * own size. Encoding writes one image, or n images as a grid, 8 bits per
 * channel, optionally scaled up by pixel repetition for display.
 */
#ifndef GM_PNGIO_H
#define GM_PNGIO_H

#include <stddef.h>
#include <stdint.h>

#include "gm/error.h"

typedef enum {
    GM_PNG_OK = 0,
    GM_PNG_MALFORMED = -1,  /* not a PNG, truncated, corrupt: a 400 */
    GM_PNG_WRONG_SIZE = -2, /* a valid PNG of another size than the model's: a 422 */
} gm_png_status;

/* Decodes a PNG of exactly h x w into out: (h*w*c) floats in [0, 1], raster
 * order, channels last. */
gm_png_status gm_png_decode(const uint8_t *data, size_t len, int h, int w, int c, float *out, char err[GM_ERR_LEN]);

/* The grid that gm_png_encode draws n images in: cols x rows cells. */
void gm_png_grid(int n, int *cols, int *rows);

/* Encodes n images (n, h*w*c) in [0, 1] as one PNG: a single image for
 * n = 1, else a grid (gm_png_grid) with a one-pixel gray gutter; every pixel
 * repeated scale x scale. description (may be NULL) becomes a tEXt chunk.
 * *out is malloc'd (caller frees). Returns 0, or -1 with err filled. */
int gm_png_encode(const float *pixels, int n, int h, int w, int c, int scale, const char *description, uint8_t **out,
                  size_t *out_len, char err[GM_ERR_LEN]);

#endif
