/*
 * pngplain.c - plain PNGs decoded with zlib alone (see pngplain.h).
 */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "pngplain.h"

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Whether the chunk at p (n data bytes) has the CRC it carries. */
static bool crc_ok(const uint8_t *p, uint32_t n) { return crc32(crc32(0, NULL, 0), p + 4, 4 + n) == be32(p + 8 + n); }

/* v / 255.0f for every byte v: the very values libpng's path computes,
 * worked out by the compiler instead of 256 divides a call */
#define L1(v) (v) / 255.0f
#define L4(v) L1(v), L1(v + 1), L1(v + 2), L1(v + 3)
#define L16(v) L4(v), L4(v + 4), L4(v + 8), L4(v + 12)
#define L64(v) L16(v), L16(v + 16), L16(v + 32), L16(v + 48)
static const float LEVEL[256] = {L64(0), L64(64), L64(128), L64(192)};

static int paeth(int a, int b, int c) {
    int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/* Undoes the filter of each row in place: raw holds a row of zeros (the
 * one above the first), then h rows of 1 + stride bytes (the filter type,
 * then the row); bpp bytes a pixel. One loop per filter type, so that the
 * type is not decided again for every byte. */
static bool unfilter(uint8_t *raw, int h, size_t stride, size_t bpp) {
    for (int y = 0; y < h; y++) {
        const uint8_t *prev = raw + (size_t)y * (stride + 1) + 1;
        uint8_t *row = (uint8_t *)prev + stride + 1;
        size_t i;
        switch (row[-1]) {
        case 0:
            break;
        case 1:
            for (i = bpp; i < stride; i++) row[i] = (uint8_t)(row[i] + row[i - bpp]);
            break;
        case 2:
            for (i = 0; i < stride; i++) row[i] = (uint8_t)(row[i] + prev[i]);
            break;
        case 3:
            for (i = 0; i < bpp; i++) row[i] = (uint8_t)(row[i] + (prev[i] >> 1));
            for (; i < stride; i++) row[i] = (uint8_t)(row[i] + ((row[i - bpp] + prev[i]) >> 1));
            break;
        case 4:
            if (bpp == 1) { /* grey: the byte to the left stays in a register, not a store and a reload */
                int a = 0, c = 0;
                for (i = 0; i < stride; i++) {
                    int b = prev[i];
                    a = (uint8_t)(row[i] + paeth(a, b, c));
                    row[i] = (uint8_t)a;
                    c = b;
                }
                break;
            }
            for (i = 0; i < bpp; i++) row[i] = (uint8_t)(row[i] + prev[i]);
            for (; i < stride; i++) row[i] = (uint8_t)(row[i] + paeth(row[i - bpp], prev[i], prev[i - bpp]));
            break;
        default:
            return false;
        }
    }
    return true;
}

bool gm_png_decode_plain(const uint8_t *data, size_t len, int h, int w, int c, float *out) {
    static const int COLOR_TYPE[5] = {-1, 0, 4, 2, 6}; /* channels -> PNG colour type */
    if (c < 1 || c > 4 || len < 8 + 25) return false;
    const uint8_t *ihdr = data + 8;
    if (be32(ihdr) != 13 || memcmp(ihdr + 4, "IHDR", 4) || !crc_ok(ihdr, 13)) return false;
    const uint8_t *f = ihdr + 8;
    if (be32(f) != (uint32_t)w || be32(f + 4) != (uint32_t)h || f[8] != 8 || f[9] != COLOR_TYPE[c] || f[10] || f[11] ||
        f[12])
        return false;
    size_t stride = (size_t)w * c, want = (size_t)h * (stride + 1);
    uint8_t *raw = malloc(stride + 1 + want);
    if (!raw) return false;
    memset(raw, 0, stride + 1);
    z_stream z = {0};
    bool ok = inflateInit(&z) == Z_OK, seen_idat = false, done = false;
    int zrc = Z_OK;
    z.next_out = raw + stride + 1;
    z.avail_out = (uInt)want;
    for (size_t pos = 8 + 25; ok && !done && pos + 12 <= len;) {
        uint32_t n = be32(data + pos);
        const uint8_t *type = data + pos + 4;
        if (!memcmp(type, "IDAT", 4)) {
            if (!crc_ok(data + pos, n)) ok = false;
            seen_idat = true;
            z.next_in = (Bytef *)(data + pos + 8);
            z.avail_in = n;
            /* Z_FINISH: a stream that ends within the buffer needs no 32 KiB
             * sliding window (allocated and filled otherwise); one split
             * over several IDATs returns Z_BUF_ERROR, having taken all of
             * each, until its last (the output may be full before the
             * stream's checksum has come) */
            zrc = inflate(&z, Z_FINISH);
            ok = ok && (zrc == Z_OK || zrc == Z_STREAM_END || (zrc == Z_BUF_ERROR && z.avail_in == 0)) &&
                 (zrc != Z_STREAM_END || z.avail_in == 0);
        } else if (seen_idat) done = true; /* the image data ended; libpng reads no further either */
        else if (!(type[0] & 0x20) || !memcmp(type, "tRNS", 4)) ok = false; /* critical, or alpha from tRNS */
        pos += 12 + (size_t)n;
    }
    ok = ok && zrc == Z_STREAM_END && z.avail_out == 0 && unfilter(raw, h, stride, (size_t)c);
    if (ok) {
        for (int y = 0; y < h; y++) {
            const uint8_t *row = raw + (size_t)(y + 1) * (stride + 1) + 1;
            float *o = out + (size_t)y * stride;
            for (size_t i = 0; i < stride; i++) o[i] = LEVEL[row[i]];
        }
    }
    inflateEnd(&z);
    free(raw);
    return ok;
}
