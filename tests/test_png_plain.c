/*
 * test_png_plain.c - PNGs decoded by the zlib-only path (pngplain.h) give
 * exactly the pixels they were made from, and everything that path leaves
 * to libpng still gets libpng's verdict. The files are written here by an
 * encoder of this test's own (every row filter, IDAT split at random
 * points, ancillary chunks around them), from random pixels: the truth is
 * the pixels themselves. Corrupt variants (a bad CRC, a cut stream, an
 * unknown filter) must not decode, and a file with tRNS must come out as
 * libpng composites it (the transparent grey on black), not as stored.
 */
#include <zlib.h>

#include "testutil.h"

#include "pngio.h"
#include "pngplain.h"

typedef struct {
    uint8_t *b;
    size_t n;
} buf;

static void put(buf *o, const void *p, size_t n) {
    if (!n) return; /* memcpy from NULL (an empty chunk) is undefined even for 0 bytes */
    o->b = realloc(o->b, o->n + n);
    memcpy(o->b + o->n, p, n);
    o->n += n;
}

static void put32(buf *o, uint32_t v) {
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(o, b, 4);
}

static void chunk(buf *o, const char *type, const uint8_t *data, uint32_t n) {
    put32(o, n);
    size_t at = o->n;
    put(o, type, 4);
    put(o, data, n);
    put32(o, (uint32_t)crc32(0, o->b + at, 4 + n));
}

static int paeth(int a, int b, int c) {
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/* A PNG of px (h x w x c bytes), each row with a random filter; the zlib
 * stream cut into IDAT chunks at random points; optional extra chunks. */
static buf encode(const uint8_t *px, int h, int w, int c, uint32_t *s, const uint8_t *trns, int bad_filter) {
    static const int TYPE[5] = {0, 0, 4, 2, 6};
    size_t stride = (size_t)w * c;
    uint8_t *raw = malloc((size_t)h * (stride + 1));
    for (int y = 0; y < h; y++) {
        const uint8_t *row = px + (size_t)y * stride, *up = y ? row - stride : NULL;
        uint8_t *o = raw + (size_t)y * (stride + 1);
        int f = bad_filter && y == h / 2 ? 5 : (int)(rnd(s) % 5);
        o[0] = (uint8_t)f;
        for (size_t i = 0; i < stride; i++) {
            int a = i >= (size_t)c ? row[i - c] : 0, b = up ? up[i] : 0, d = up && i >= (size_t)c ? up[i - c] : 0;
            int pred = f == 1 ? a : f == 2 ? b : f == 3 ? (a + b) / 2 : f == 4 ? paeth(a, b, d) : 0;
            o[1 + i] = (uint8_t)(row[i] - pred);
        }
    }
    uLongf zn = compressBound((uLong)(h * (stride + 1)));
    uint8_t *z = malloc(zn);
    assert_int_equal(compress2(z, &zn, raw, (uLong)(h * (stride + 1)), (int)(rnd(s) % 10)), Z_OK);
    buf o = {0};
    put(&o, "\x89PNG\r\n\x1a\n", 8);
    uint8_t ihdr[13] = {0};
    for (int i = 0; i < 4; i++) {
        ihdr[i] = (uint8_t)((uint32_t)w >> (24 - 8 * i));
        ihdr[4 + i] = (uint8_t)((uint32_t)h >> (24 - 8 * i));
    }
    ihdr[8] = 8;
    ihdr[9] = (uint8_t)TYPE[c];
    chunk(&o, "IHDR", ihdr, 13);
    if (rnd(s) % 2) chunk(&o, "tEXt", (const uint8_t *)"Comment\0made here", 17);
    if (trns) chunk(&o, "tRNS", trns, 2);
    for (size_t at = 0; at < zn;) {
        size_t n = 1 + rnd(s) % (zn - at);
        chunk(&o, "IDAT", z + at, (uint32_t)n);
        at += n;
    }
    if (rnd(s) % 2) chunk(&o, "tEXt", (const uint8_t *)"After\0the image", 15);
    chunk(&o, "IEND", NULL, 0);
    free(raw);
    free(z);
    return o;
}

static void test_plain_pngs_decode_to_their_pixels(void **state) {
    uint32_t s = 11;
    const int sizes[][2] = {{1, 1}, {28, 28}, {7, 13}, {3, 100}, {64, 64}};
    for (int round = 0; round < 200; round++) {
        int h = sizes[round % 5][0], w = sizes[round % 5][1], c = 1 + round % 4;
        size_t n = (size_t)h * w * c;
        uint8_t *px = malloc(n);
        bool smooth = round % 3 == 0; /* runs of equal values, as real images have */
        for (size_t i = 0; i < n; i++)
            px[i] = smooth && i ? (uint8_t)(px[i - 1] + (rnd(&s) % 3 == 0)) : (uint8_t)rnd(&s);
        buf png = encode(px, h, w, c, &s, NULL, 0);
        float *out = malloc(n * sizeof *out);
        /* the fast path itself takes them (its IDATs split anywhere), not libpng behind it */
        if (!gm_png_decode_plain(png.b, png.n, h, w, c, out)) {
            print_error("round %d (%dx%dx%d): the plain decoder left it to libpng\n", round, h, w, c);
            fail();
        }
        char err[GM_ERR_LEN] = "";
        gm_png_status st = gm_png_decode(png.b, png.n, h, w, c, out, err);
        if (st != GM_PNG_OK) print_error("round %d (%dx%dx%d): %s\n", round, h, w, c, err);
        assert_int_equal(st, GM_PNG_OK);
        for (size_t i = 0; i < n; i++)
            if (out[i] != px[i] / 255.0f) {
                print_error("round %d (%dx%dx%d): value %zu is %g, the file holds %d\n", round, h, w, c, i,
                            (double)out[i] * 255, px[i]);
                fail();
            }
        free(out);
        free(png.b);
        free(px);
    }
}

static void test_what_plain_leaves_gets_libpngs_verdict(void **state) {
    uint32_t s = 5;
    enum { H = 28, W = 28 };
    uint8_t px[H * W];
    for (int i = 0; i < H * W; i++) px[i] = (uint8_t)(rnd(&s) % 4 * 60); /* 0, 60, 120, 180 */
    float out[H * W];
    char err[GM_ERR_LEN];
    /* the data intact but the first IDAT's CRC wrong */
    buf png = encode(px, H, W, 1, &s, NULL, 0);
    size_t idat = (size_t)((uint8_t *)memmem(png.b, png.n, "IDAT", 4) - png.b);
    uint32_t len = (uint32_t)png.b[idat - 4] << 24 | png.b[idat - 3] << 16 | png.b[idat - 2] << 8 | png.b[idat - 1];
    png.b[idat + 4 + len] ^= 1;
    err[0] = 0;
    assert_int_equal(gm_png_decode(png.b, png.n, H, W, 1, out, err), GM_PNG_MALFORMED);
    print_message("a bad IDAT CRC: %s\n", err);
    free(png.b);
    /* an unknown filter type */
    png = encode(px, H, W, 1, &s, NULL, 1);
    err[0] = 0;
    assert_int_equal(gm_png_decode(png.b, png.n, H, W, 1, out, err), GM_PNG_MALFORMED);
    print_message("filter type 5: %s\n", err);
    free(png.b);
    /* the zlib stream cut short (the chunks still fit and carry good CRCs) */
    png = encode(px, H, W, 1, &s, NULL, 0);
    uint8_t *z = NULL;
    size_t zn = 0;
    for (size_t p = 8; p + 12 <= png.n;) {
        uint32_t n = (uint32_t)png.b[p] << 24 | png.b[p + 1] << 16 | png.b[p + 2] << 8 | png.b[p + 3];
        if (!memcmp(png.b + p + 4, "IDAT", 4)) {
            z = realloc(z, zn + n);
            memcpy(z + zn, png.b + p + 8, n);
            zn += n;
        }
        p += 12 + n;
    }
    buf cut = {0};
    put(&cut, png.b, 33); /* signature and IHDR */
    chunk(&cut, "IDAT", z, (uint32_t)(zn / 2));
    chunk(&cut, "IEND", NULL, 0);
    err[0] = 0;
    assert_int_equal(gm_png_decode(cut.b, cut.n, H, W, 1, out, err), GM_PNG_MALFORMED);
    print_message("half the image data: %s\n", err);
    free(cut.b);
    free(z);
    free(png.b);
    /* tRNS: grey 60 is transparent, and libpng composites it on black */
    const uint8_t trns[2] = {0, 60};
    png = encode(px, H, W, 1, &s, trns, 0);
    assert_int_equal(gm_png_decode(png.b, png.n, H, W, 1, out, err), GM_PNG_OK);
    for (int i = 0; i < H * W; i++) assert_true(out[i] == (px[i] == 60 ? 0.0f : px[i] / 255.0f));
    free(png.b);
    /* another size than asked: libpng's 422 */
    png = encode(px, H, W, 1, &s, NULL, 0);
    assert_int_equal(gm_png_decode(png.b, png.n, H, H + 1, 1, out, err), GM_PNG_WRONG_SIZE);
    free(png.b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_pngs_decode_to_their_pixels),
        cmocka_unit_test(test_what_plain_leaves_gets_libpngs_verdict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
