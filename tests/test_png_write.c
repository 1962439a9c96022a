/*
 * test_png_write.c - the zlib-only PNG writer (pngwrite.h) writes exactly
 * the bytes libpng writes with the settings the server used before it
 * (run-length deflate, the adaptive filter or Up alone, a tEXt chunk), and
 * gm_png_encode's output decodes to its pixels. The truth is libpng itself,
 * driven here as the server drove it: random and smooth images, every
 * channel count, one-pixel-wide and one-row images, images of a few bytes
 * (zlib headers of every window size), and images past 16 KiB of stream
 * (full 8192-byte IDAT chunks, several deflate blocks).
 */
#include <png.h>
#include <zlib.h>

#include "testutil.h"

#include "pngio.h"
#include "pngwrite.h"

typedef struct {
    uint8_t *b;
    size_t n;
} buf;

static void put(png_structp png, png_bytep data, size_t n) {
    buf *o = png_get_io_ptr(png);
    o->b = realloc(o->b, o->n + n);
    memcpy(o->b + o->n, data, n);
    o->n += n;
}

static void flush_nothing(png_structp png) { (void)png; }

/* libpng's PNG of img with the settings gm_png_encode used to give it. */
static buf libpng_write(const uint8_t *img, int h, int w, int c, bool up_only, const char *text) {
    static const int COLOR[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                 PNG_COLOR_TYPE_RGBA};
    buf o = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    assert_non_null(info);
    if (setjmp(png_jmpbuf(png))) fail_msg("libpng failed to write a %dx%dx%d image", h, w, c);
    png_set_write_fn(png, &o, put, flush_nothing);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, COLOR[c], PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (text) {
        png_text t = {.compression = PNG_TEXT_COMPRESSION_NONE, .key = "Description", .text = (char *)text};
        png_set_text(png, info, &t, 1);
    }
    png_set_compression_strategy(png, Z_RLE);
    if (up_only) png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_FILTER_UP);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, img + (size_t)y * w * c);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    return o;
}

/* Random bytes, or runs of a few levels (as samples have: flat regions). */
static uint8_t *image(int h, int w, int c, int kind, uint32_t *s) {
    size_t n = (size_t)h * w * c;
    uint8_t *px = malloc(n);
    for (size_t i = 0; i < n; i++)
        px[i] = kind == 0   ? (uint8_t)rnd(s)
                : kind == 1 ? (uint8_t)(rnd(s) % 4 * 85)
                : i         ? (uint8_t)(px[i - 1] + (rnd(s) % 5 == 0 ? rnd(s) % 7 - 3 : 0))
                            : 0;
    return px;
}

static void same_bytes(const uint8_t *px, int h, int w, int c, bool up_only, const char *text) {
    buf want = libpng_write(px, h, w, c, up_only, text);
    uint8_t *got;
    size_t n;
    assert_true(gm_png_write_plain(px, h, w, c, up_only, text, &got, &n));
    size_t i = 0;
    while (i < n && i < want.n && got[i] == want.b[i]) i++;
    if (i < n || i < want.n)
        fail_msg("%dx%dx%d%s: %zu bytes, libpng's %zu; first difference at byte %zu", h, w, c, up_only ? " (Up)" : "",
                 n, want.n, i);
    free(got);
    free(want.b);
}

static void test_bytes_are_libpngs(void **state) {
    uint32_t s = 3;
    const int sizes[][2] = {{1, 1},   {1, 9},   {9, 1},   {2, 2},   {28, 28}, {7, 13},    {3, 100}, {16, 16},
                            {64, 64}, {29, 57}, {90, 90}, {1, 300}, {300, 1}, {128, 200}, {11, 11}};
    int n_sizes = (int)(sizeof sizes / sizeof sizes[0]);
    for (int round = 0; round < 3 * 4 * n_sizes; round++) {
        int h = sizes[round % n_sizes][0], w = sizes[round % n_sizes][1], c = 1 + round / n_sizes % 4;
        int kind = round / (4 * n_sizes);
        uint8_t *px = image(h, w, c, kind, &s);
        same_bytes(px, h, w, c, false, round % 2 ? "gmserve model=vae op=sample n=1 seed=7" : NULL);
        same_bytes(px, h, w, c, true, "gmserve model=gan op=sample n=4 seed=12345678901234567890");
        free(px);
    }
}

/* Streams of every length from 2 bytes to past 16 KiB cross each zlib
 * header window (512 bytes up) and the 8192-byte chunk edge. */
static void test_bytes_are_libpngs_at_every_window(void **state) {
    uint32_t s = 9;
    for (int h = 1; h <= 200; h += h < 40 ? 1 : 17) {
        int w = 1 + (int)(rnd(&s) % 120);
        uint8_t *px = image(h, w, 1, (int)(rnd(&s) % 3), &s);
        same_bytes(px, h, w, 1, false, "x");
        free(px);
    }
}

static void test_encode_decodes_to_its_pixels(void **state) {
    enum { H = 28, W = 28 };
    uint32_t s = 21;
    for (int c = 1; c <= 4; c++) {
        float px[H * W * 4], out[H * W * 4];
        for (int i = 0; i < H * W * c; i++) px[i] = (float)(rnd(&s) % 256) / 255.0f;
        uint8_t *png;
        size_t len;
        char err[GM_ERR_LEN];
        assert_int_equal(gm_png_encode(px, 1, H, W, c, 1, "d", &png, &len, err), 0);
        assert_int_equal(gm_png_decode(png, len, H, W, c, out, err), GM_PNG_OK);
        for (int i = 0; i < H * W * c; i++)
            if (out[i] != px[i]) fail_msg("c=%d: value %d is %g, want %g", c, i, (double)out[i], (double)px[i]);
        free(png);
    }
}

/* Sizes past PNG's or zlib's limits are refused before img is read. */
static void test_sizes_past_the_limits(void **state) {
    uint8_t px[4] = {0}, *out = NULL;
    size_t n;
    assert_false(gm_png_write_plain(px, 1, 1 << 30, 1, false, NULL, &out, &n));
    assert_false(gm_png_write_plain(px, 1, 1 << 28, 4, false, NULL, &out, &n));
    assert_false(gm_png_write_plain(px, 1 << 30, 1, 1, false, NULL, &out, &n));
    assert_false(gm_png_write_plain(px, 0, 1, 1, false, NULL, &out, &n));
    assert_false(gm_png_write_plain(px, 1, 1, 5, false, NULL, &out, &n));
    assert_null(out);
    assert_true(gm_png_write_plain(px, 2, 2, 1, false, NULL, &out, &n));
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes_are_libpngs),
        cmocka_unit_test(test_bytes_are_libpngs_at_every_window),
        cmocka_unit_test(test_encode_decodes_to_its_pixels),
        cmocka_unit_test(test_sizes_past_the_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
