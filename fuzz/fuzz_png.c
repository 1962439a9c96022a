/*
 * fuzz_png.c - libFuzzer harness for the PNG decoder (gm_png_decode).
 *
 * Input: one byte that picks the model shape the image must have (byte % 8
 * indexes SHAPES below: the fixture models' shapes plus 2- and 4-channel
 * ones), then the PNG file's bytes. A decode must return one of the three
 * statuses, an error message on failure, and values in [0, 1] on success.
 */
#include "fuzz_util.h"
#include "pngio.h"

static const int SHAPES[8][3] = {{2, 5, 1}, {3, 3, 1},   {8, 8, 3}, {16, 16, 1},
                                 {6, 6, 3}, {28, 28, 1}, {4, 4, 2}, {4, 4, 4}};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const int *s = SHAPES[data[0] % 8];
    size_t n = (size_t)s[0] * s[1] * s[2];
    float *out = malloc(n * sizeof *out);
    char err[GM_ERR_LEN];
    FUZZ_CHECK(out, "out of memory");
    gm_png_status st = gm_png_decode(data + 1, size - 1, s[0], s[1], s[2], out, err);
    FUZZ_CHECK(st == GM_PNG_OK || st == GM_PNG_MALFORMED || st == GM_PNG_WRONG_SIZE, "status %d", (int)st);
    if (st != GM_PNG_OK) fuzz_check_err(err, sizeof err);
    else
        for (size_t i = 0; i < n; i++) FUZZ_CHECK(out[i] >= 0.0f && out[i] <= 1.0f, "value %zu = %g", i, out[i]);
    free(out);
    return 0;
}
