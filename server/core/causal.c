/* causal.c - the numerical causality check (causal.h). */
#include "causal.h"

#include <math.h>
#include <stdlib.h>

#include "gm/rng.h"

#define CHECK_PIXELS 16
#define CHECK_SEED 20261201u
#define CHECK_TOLERANCE 1e-5

int gm_check_causal(const void *net, gm_logits_fn fn, int height, int width, int channels, const char *L,
                    const char *what, char err[GM_ERR_LEN]) {
    int C = channels, P = height * width, D = P * C;
    int S = P < CHECK_PIXELS ? P : CHECK_PIXELS, rc = -1;
    float *x = malloc((size_t)D * sizeof *x), *y0 = malloc((size_t)D * sizeof *y0), *y = malloc((size_t)D * sizeof *y);
    if (!x || !y0 || !y) goto oom;
    gm_rng rng;
    gm_rng_seed(&rng, CHECK_SEED, 0);
    for (int i = 0; i < D; i++) x[i] = gm_rng_uniform(&rng) < 0.5 ? 1.0f : 0.0f;
    if (fn(net, x, y0)) goto oom;
    for (int s = 0; s < S; s++)
        for (int c = 0; c < C; c++) {
            int t = S > 1 ? (int)((long long)s * (P - 1) / (S - 1)) : 0, flipped = t * C + c;
            x[flipped] = 1.0f - x[flipped];
            int failed = fn(net, x, y);
            x[flipped] = 1.0f - x[flipped];
            if (failed) goto oom;
            for (int i = 0; i <= flipped; i++) {
                double a = y0[i], b = y[i];
                if (!(fabs(a - b) <= CHECK_TOLERANCE * (1.0 + fabs(a)))) {
                    rc = gm_errorf(err,
                                   "%s: %s is not causal: its output at pixel (row %d, column %d, channel %d) "
                                   "changes from %.7g to %.7g when input pixel (row %d, column %d, channel %d) "
                                   "is flipped; an output may depend on earlier pixels (raster order, channels "
                                   "in order) only",
                                   L, what, i / C / width, i / C % width, i % C, a, b, t / width, t % width, c);
                    goto done;
                }
            }
        }
    rc = 0;
    goto done;
oom:
    rc = gm_errorf(err, "%s: out of memory checking the causality of %s", L, what);
done:
    free(x);
    free(y0);
    free(y);
    return rc;
}
