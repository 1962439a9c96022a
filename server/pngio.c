/*
 * pngio.c - PNG decode and encode on memory buffers (see png.h).
 *
 * libpng reports errors by longjmp: every function here sets its jump buffer
 * first, keeps what the error path must free in volatile locals, and turns
 * libpng's message into err. Reads past the end of the buffer are errors,
 * never short reads, so a truncated file cannot leave rows half filled.
 * The common plain PNG is decoded by pngplain.c with zlib alone, ahead of
 * libpng, which still decides everything that path does not take. Encoding
 * draws the images as 8-bit rows and hands them to pngwrite.c, which
 * writes libpng's bytes with zlib alone.
 */
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "pngio.h"
#include "pngplain.h"
#include "pngwrite.h"

enum { MAX_SIDE = 4096, MAX_CHUNK_BYTES = 1 << 20 };

typedef struct {
    const uint8_t *data;
    size_t len, pos;
    char *err;
} reader;

static void on_error(png_structp png, png_const_charp msg) {
    char *err = png_get_error_ptr(png);
    if (err && !err[0]) gm_errorf(err, "%s", msg);
    png_longjmp(png, 1);
}

/* libpng gives the reason for some refusals (e.g. a width over the limit) as
 * a warning just before the error; keep the first one as the message. */
static void on_warning(png_structp png, png_const_charp msg) {
    char *err = png_get_error_ptr(png);
    if (err && !err[0]) gm_errorf(err, "%s", msg);
}

static void read_bytes(png_structp png, png_bytep out, png_size_t n) {
    reader *r = png_get_io_ptr(png);
    if (n > r->len - r->pos) png_error(png, "truncated PNG: the data ends early");
    memcpy(out, r->data + r->pos, n);
    r->pos += n;
}

/* Asks libpng for 8-bit samples in exactly c channels, alpha composited on
 * black when the model has no alpha channel (the datasets' background). */
static void set_transforms(png_structp png, png_infop info, int c) {
    int type = png_get_color_type(png, info);
    png_set_strip_16(png);
    png_set_packing(png);
    if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (type == PNG_COLOR_TYPE_GRAY) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    bool color = type & PNG_COLOR_MASK_COLOR;
    bool want_color = c >= 3, want_alpha = c == 2 || c == 4;
    if (color && !want_color) png_set_rgb_to_gray_fixed(png, 1, -1, -1);
    if (!color && want_color) png_set_gray_to_rgb(png);
    bool alpha = (type & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS);
    if (alpha && !want_alpha) {
        png_color_16 black = {0};
        png_set_background_fixed(png, &black, PNG_BACKGROUND_GAMMA_SCREEN, 0, PNG_FP_1);
    }
    if (!alpha && want_alpha) png_set_add_alpha(png, 0xff, PNG_FILLER_AFTER);
    png_set_interlace_handling(png);
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Walks the chunk list before libpng sees it. libpng allocates (and zeroes)
 * a text chunk's declared length before it reads the data, so a 44-byte
 * file declaring a 2 GB tEXt chunk would cost 2 GB; here every chunk must
 * fit in the bytes that are actually there, so nothing libpng allocates for
 * a chunk can exceed the request body. */
static bool chunks_fit(const uint8_t *data, size_t len, char err[GM_ERR_LEN]) {
    for (size_t pos = 8; pos < len;) {
        if (len - pos < 12) {
            gm_errorf(err, "invalid PNG: truncated chunk header at byte %zu", pos);
            return false;
        }
        uint32_t n = be32(data + pos);
        char type[5] = {0};
        for (int i = 0; i < 4; i++)
            type[i] = data[pos + 4 + i] >= 0x20 && data[pos + 4 + i] < 0x7f ? (char)data[pos + 4 + i] : '?';
        if (n > len - pos - 12) {
            gm_errorf(err, "invalid PNG: chunk %s at byte %zu declares %u bytes of data but only %zu remain", type, pos,
                      n, len - pos - 12);
            return false;
        }
        if (!memcmp(type, "IEND", 4)) return true;
        pos += 12 + (size_t)n;
    }
    return true; /* no IEND: libpng says what is missing */
}

/* Chunks the conversion to pixels never needs: libpng skips them without
 * allocating or decompressing anything (a zTXt or iCCP is compressed). */
static const png_byte IGNORED_CHUNKS[] = "tEXt\0zTXt\0iTXt\0iCCP\0sPLT\0eXIf\0tIME\0pHYs\0hIST\0";

gm_png_status gm_png_decode(const uint8_t *data, size_t len, int h, int w, int c, float *out, char err[GM_ERR_LEN]) {
    char msg[GM_ERR_LEN] = "";
    if (len < 8 || png_sig_cmp(data, 0, 8) != 0) {
        gm_errorf(err, "not a PNG image (the first 8 bytes are not the PNG signature)");
        return GM_PNG_MALFORMED;
    }
    if (!chunks_fit(data, len, err)) return GM_PNG_MALFORMED;
    if (gm_png_decode_plain(data, len, h, w, c, out)) return GM_PNG_OK;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, msg, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        gm_errorf(err, "out of memory decoding a PNG");
        return GM_PNG_MALFORMED;
    }
    png_bytep volatile pixels = NULL;
    png_bytepp volatile row_ptrs = NULL;
    volatile gm_png_status status = GM_PNG_MALFORMED;
    if (setjmp(png_jmpbuf(png))) {
        gm_errorf(err, "invalid PNG: %s", msg[0] ? msg : "corrupt data");
        goto done;
    }
    png_set_user_limits(png, MAX_SIDE, MAX_SIDE);
    png_set_chunk_malloc_max(png, MAX_CHUNK_BYTES);
    png_set_chunk_cache_max(png, 64);
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, 0);
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, IGNORED_CHUNKS, (int)(sizeof IGNORED_CHUNKS / 5));
    reader r = {data, len, 8, msg};
    png_set_read_fn(png, &r, read_bytes);
    png_set_sig_bytes(png, 8);
    png_read_info(png, info);
    int pw = (int)png_get_image_width(png, info), ph = (int)png_get_image_height(png, info);
    if (pw != w || ph != h) {
        gm_errorf(err, "the PNG is %dx%d pixels (width x height) but the model takes %dx%d", pw, ph, w, h);
        status = GM_PNG_WRONG_SIZE;
        goto done;
    }
    set_transforms(png, info, c);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != (size_t)w * c) {
        gm_errorf(err, "cannot convert this PNG to %d channel(s) of 8 bits", c);
        goto done;
    }
    pixels = malloc((size_t)h * w * c);
    row_ptrs = malloc((size_t)h * sizeof *row_ptrs);
    if (!pixels || !row_ptrs) {
        gm_errorf(err, "out of memory decoding a PNG");
        goto done;
    }
    for (int y = 0; y < h; y++) row_ptrs[y] = pixels + (size_t)y * w * c;
    png_read_image(png, row_ptrs);
    for (size_t i = 0; i < (size_t)h * w * c; i++) out[i] = pixels[i] / 255.0f;
    status = GM_PNG_OK;
done:
    png_destroy_read_struct(&png, &info, NULL);
    free(pixels);
    free(row_ptrs);
    return status;
}

void gm_png_grid(int n, int *cols, int *rows) {
    int c = (int)ceil(sqrt((double)n));
    if (c < 1) c = 1;
    *cols = c;
    *rows = (n + c - 1) / c;
}

/* Draws the grid in 8-bit samples: (H, W, c) with H, W in pixels. Each
 * image row is converted and widened once; its scale - 1 copies are memcpy. */
static uint8_t *draw_grid(const float *pixels, int n, int h, int w, int c, int scale, int *gw, int *gh) {
    int cols, rows;
    gm_png_grid(n, &cols, &rows);
    int gutter = n > 1 ? 1 : 0;
    *gw = (cols * (w + gutter) - gutter) * scale;
    *gh = (rows * (h + gutter) - gutter) * scale;
    size_t stride = (size_t)*gw * c, cell = (size_t)w * scale * c;
    uint8_t *img = malloc(stride * *gh);
    if (!img) return NULL;
    memset(img, 128, stride * *gh);
    for (int k = 0; k < n; k++) {
        int x0 = (k % cols) * (w + gutter) * scale, y0 = (k / cols) * (h + gutter) * scale;
        const float *src = pixels + (size_t)k * h * w * c;
        for (int y = 0; y < h; y++) {
            uint8_t *dst = img + (size_t)(y0 + y * scale) * stride + (size_t)x0 * c;
            const float *srow = src + (size_t)y * w * c;
            for (int x = 0; x < w; x++)
                for (int ch = 0; ch < c; ch++) {
                    float v = srow[(size_t)x * c + ch];
                    v = v < 0 ? 0 : v > 1 ? 1 : v;          /* also maps NaN to 0 */
                    uint8_t b = (uint8_t)rintf(v * 255.0f); /* lrintf, but inlined */
                    for (int r = 0; r < scale; r++) dst[((size_t)x * scale + r) * c + ch] = b;
                }
            for (int r = 1; r < scale; r++) memcpy(dst + (size_t)r * stride, dst, cell);
        }
    }
    return img;
}

int gm_png_encode(const float *pixels, int n, int h, int w, int c, int scale, const char *description, uint8_t **out,
                  size_t *out_len, char err[GM_ERR_LEN]) {
    if (c < 1 || c > 4) return gm_errorf(err, "cannot write a PNG with %d channels (1 to 4 only)", c);
    int gw, gh;
    uint8_t *img = draw_grid(pixels, n, h, w, c, scale, &gw, &gh);
    if (!img) return gm_errorf(err, "out of memory drawing %d images", n);
    /* Run-length deflate: on these images (few gray levels, flat regions) it
     * packs as well as libpng's default level 6, or better, in a fraction of
     * the time (4096 NADE samples: 789 kB in 0.74 s -> 746 kB in 0.42 s per
     * request; 16384 random binary images: 2.1 s -> 0.2 s). An upscaled
     * image repeats each row scale times, which the Up filter turns into
     * zeros: 256 images at scale 16, 0.38 s and 520 kB -> 0.095 s and 445 kB. */
    bool ok = gm_png_write_plain(img, gh, gw, c, scale > 1, description, out, out_len);
    free(img);
    return ok ? 0 : gm_errorf(err, "cannot write a PNG of %d x %d (out of memory, or past PNG's size limits)", gw, gh);
}
