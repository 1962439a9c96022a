/*
 * pngwrite.c - 8-bit PNGs written with zlib alone (see pngwrite.h).
 *
 * The deflate stream is driven as libpng drives it: one deflate call per
 * filtered row without flushing, then one that finishes, into a window of
 * 8192 bytes that becomes an IDAT chunk each time it fills. Run-length
 * deflate only ever matches the byte before, so the window size changes
 * nothing but the header, and the symbol buffer only where a block would
 * end; both are chosen so that the bytes are libpng's.
 */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "pngwrite.h"

enum { IDAT_BYTES = 8192, F_NONE = 1, F_SUB = 2, F_UP = 4, F_AVG = 8, F_PAETH = 16, F_ALL = 31 };

typedef struct {
    uint8_t *b;
    size_t len, cap;
} out_buf;

static void be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static bool reserve(out_buf *o, size_t n) {
    if (n <= o->cap - o->len) return true;
    size_t cap = o->cap * 2 > o->len + n ? o->cap * 2 : o->len + n;
    uint8_t *b = realloc(o->b, cap);
    if (!b) return false;
    o->b = b;
    o->cap = cap;
    return true;
}

/* Closes the chunk whose 8-byte head is at `at` and whose n data bytes follow. */
static void end_chunk(out_buf *o, size_t at, uint32_t n) {
    be32(o->b + at, n);
    be32(o->b + at + 8 + n, (uint32_t)crc32(0, o->b + at + 4, 4 + n));
    o->len = at + 12 + n;
}

static bool chunk(out_buf *o, const char *type, const void *a, size_t na, const void *b, size_t nb) {
    if (!reserve(o, 12 + na + nb)) return false;
    size_t at = o->len;
    memcpy(o->b + at + 4, type, 4);
    if (na) memcpy(o->b + at + 8, a, na);
    if (nb) memcpy(o->b + at + 8 + na, b, nb);
    end_chunk(o, at, (uint32_t)(na + nb));
    return true;
}

/* A filtered byte as libpng weighs it: its distance from 0 as a signed
 * byte (v below 128, else 256 - v, which is the byte -v). */
static inline uint8_t cost(uint8_t v) {
    uint8_t neg = (uint8_t)-v;
    return v < neg ? v : neg;
}

static inline int paeth(int a, int b, int c) {
    int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/* Row (n bytes, bpp a pixel) under filter type v (0 none ... 4 Paeth) over
 * prev (all zeros above the first row) into dst; returns libpng's cost of
 * the result. The first pixel has nothing to its left (0); the rest is one
 * loop per type. (Vector loops measured slower: rows are a few dozen bytes.) */
static size_t filter_png_row(int v, const uint8_t *restrict row, const uint8_t *restrict prev, size_t n, size_t bpp,
                             uint8_t *restrict dst) {
    size_t sum = 0;
    size_t i, first = bpp < n ? bpp : n;
    for (i = 0; i < first; i++) {
        int b = prev[i], pred = v == 2 || v == 4 ? b : v == 3 ? b >> 1 : 0;
        dst[i] = (uint8_t)(row[i] - pred);
        sum += cost(dst[i]);
    }
    switch (v) {
    case 0:
        for (i = first; i < n; i++) sum += cost(dst[i] = row[i]);
        break;
    case 1:
        for (i = first; i < n; i++) sum += cost(dst[i] = (uint8_t)(row[i] - row[i - bpp]));
        break;
    case 2:
        for (i = first; i < n; i++) sum += cost(dst[i] = (uint8_t)(row[i] - prev[i]));
        break;
    case 3:
        for (i = first; i < n; i++) sum += cost(dst[i] = (uint8_t)(row[i] - ((row[i - bpp] + prev[i]) >> 1)));
        break;
    default:
        for (i = first; i < n; i++)
            sum += cost(dst[i] = (uint8_t)(row[i] - paeth(row[i - bpp], prev[i], prev[i - bpp])));
        break;
    }
    return sum;
}

/* Writes row's filter byte and filtered bytes to dst: the one filter in
 * `filters`, or the one of least cost, the lowest type winning a tie; try
 * holds n scratch bytes. */
static void choose_png_filter(const uint8_t *row, const uint8_t *prev, size_t n, size_t bpp, unsigned filters,
                              uint8_t *dst, uint8_t *try) {
    int best = 0;
    if (!(filters & (filters - 1))) {
        while (!(filters & 1u << best)) best++;
        filter_png_row(best, row, prev, n, bpp, dst + 1);
    } else {
        size_t least = filter_png_row(0, row, prev, n, bpp, dst + 1); /* every adaptive set holds None */
        for (int v = 1; v < 5; v++) {
            if (!(filters & 1u << v)) continue;
            size_t sum = filter_png_row(v, row, prev, n, bpp, try);
            if (sum < least) {
                least = sum;
                best = v;
                memcpy(dst + 1, try, n);
            }
        }
    }
    dst[0] = (uint8_t)best;
}

/* libpng's window for a stream of `size` bytes: the smallest that still
 * leaves it 262 bytes of lookahead, for streams up to 16 KiB. */
static int window_bits(size_t size) {
    int bits = 15;
    if (size <= 16384)
        for (size_t half = 1u << 14; size + 262 <= half; half >>= 1) bits--;
    return bits;
}

/* The zlib header libpng writes over deflate's (its optimize_cmf): the
 * smallest window that covers the whole stream, and the check bits. */
static void header(uint8_t *z, size_t size) {
    unsigned cmf = z[0];
    if (size > 16384 || (cmf & 0x0f) != 8 || (cmf & 0xf0) > 0x70) return;
    unsigned cinfo = cmf >> 4, half = 1u << (cinfo + 7);
    if (size > half) return;
    do {
        half >>= 1;
        cinfo--;
    } while (cinfo > 0 && size <= half);
    cmf = (cmf & 0x0f) | cinfo << 4;
    unsigned flg = z[1] & 0xe0u;
    flg += 0x1f - ((cmf << 8) + flg) % 0x1f;
    z[0] = (uint8_t)cmf;
    z[1] = (uint8_t)flg;
}

/* Deflate on the input given, as libpng calls it: each full window of
 * output becomes an IDAT chunk and a new window opens (its head at *at);
 * without flushing, until the input is taken, finishing, until the stream
 * ends. Returns deflate's code, or Z_MEM_ERROR when the buffer cannot grow. */
static int deflate_into(z_stream *z, out_buf *o, size_t *at, int flush, size_t size, bool *first) {
    for (;;) {
        int ret = deflate(z, flush);
        if (!z->avail_out) {
            if (*first) header(o->b + *at + 8, size);
            *first = false;
            end_chunk(o, *at, IDAT_BYTES);
            if (!reserve(o, 12 + IDAT_BYTES + 12)) return Z_MEM_ERROR;
            *at = o->len;
            memcpy(o->b + *at + 4, "IDAT", 4);
            z->next_out = o->b + *at + 8;
            z->avail_out = IDAT_BYTES;
        } else if (ret == Z_OK && flush != Z_NO_FLUSH) return Z_BUF_ERROR; /* libpng: Z_OK on Z_FINISH with room */
        if (ret != Z_OK || (flush == Z_NO_FLUSH && !z->avail_in)) return ret;
    }
}

bool gm_png_write_plain(const uint8_t *img, int h, int w, int c, bool up_only, const char *text, uint8_t **out,
                        size_t *out_len) {
    static const uint8_t SIG[8] = {137, 80, 78, 71, 13, 10, 26, 10}, COLOR[5] = {0, 0, 4, 2, 6};
    enum { MAX_ROW = 1 << 30 }; /* PNG allows 2^31 - 1 pixels a side; zlib takes 2^32 - 1 bytes a call */
    if (h < 1 || w < 1 || c < 1 || c > 4 || (size_t)w * c >= MAX_ROW || h >= MAX_ROW) return false;
    size_t stride = (size_t)w * c, size = (size_t)h * (stride + 1);
    unsigned filters = up_only ? F_UP : F_ALL;
    if (h == 1) filters &= ~(unsigned)(F_UP | F_AVG | F_PAETH);
    if (w == 1) filters &= ~(unsigned)(F_SUB | F_AVG | F_PAETH);
    if (!filters) filters = F_NONE;
    /* the smallest level whose symbol buffer (a block ends every 2^(level+6) - 1
     * symbols) holds the whole image, and libpng's 8 past that: no block ends
     * where libpng's would not */
    int mem_level = 1;
    while (mem_level < 8 && ((size_t)1 << (mem_level + 6)) < size + 2) mem_level++;

    out_buf o = {0};
    uint8_t ihdr[13];
    be32(ihdr, (uint32_t)w);
    be32(ihdr + 4, (uint32_t)h);
    memcpy(ihdr + 8, (const uint8_t[]){8, COLOR[c], 0, 0, 0}, 5);
    uint8_t *rows = malloc(3 * (stride + 1));
    z_stream z = {0};
    bool ok = rows && deflateInit2(&z, 6, Z_DEFLATED, window_bits(size), mem_level, Z_RLE) == Z_OK;
    ok = ok && reserve(&o, 8 + 25 + 12 + IDAT_BYTES + 12);
    if (ok) {
        memcpy(o.b, SIG, 8);
        o.len = 8;
    }
    ok = ok && chunk(&o, "IHDR", ihdr, 13, NULL, 0);
    ok = ok && (!text || chunk(&o, "tEXt", "Description", 12, text, strlen(text)));
    ok = ok && reserve(&o, 12 + IDAT_BYTES + 12);
    size_t at = o.len;
    bool first = true;
    if (ok) {
        memcpy(o.b + at + 4, "IDAT", 4);
        z.next_out = o.b + at + 8;
        z.avail_out = IDAT_BYTES;
    }
    uint8_t *line = rows, *zeros = rows + stride + 1, *try = zeros + stride + 1;
    if (rows) memset(zeros, 0, stride + 1);
    for (int y = 0; ok && y < h; y++) {
        const uint8_t *row = img + (size_t)y * stride;
        choose_png_filter(row, y ? row - stride : zeros, stride, (size_t)c, filters, line, try);
        z.next_in = line;
        z.avail_in = (uInt)(stride + 1);
        ok = deflate_into(&z, &o, &at, Z_NO_FLUSH, size, &first) == Z_OK && z.avail_in == 0;
    }
    ok = ok && deflate_into(&z, &o, &at, Z_FINISH, size, &first) == Z_STREAM_END;
    if (ok) {
        uint32_t n = IDAT_BYTES - z.avail_out;
        if (n) {
            if (first) header(o.b + at + 8, size);
            end_chunk(&o, at, n);
        }
        ok = chunk(&o, "IEND", NULL, 0, NULL, 0);
    }
    deflateEnd(&z);
    free(rows);
    if (!ok) {
        free(o.b);
        return false;
    }
    *out = o.b;
    *out_len = o.len;
    return true;
}
