/* dataset.c - idx.gz reader (zlib) and the seeded binarization. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "dataset.h"
#include "gm/rng.h"

#define MAX_ITEMS 10000000
#define MAX_SIDE 4096

/* Reads a whole .gz file (at most `limit` bytes once inflated). */
static uint8_t *read_gz(const char *path, size_t limit, size_t *len, char err[GM_ERR_LEN]) {
    gzFile f = gzopen(path, "rb");
    if (!f) {
        gm_errorf(err, "%s: cannot open (is the Debian package dataset-fashion-mnist installed?)", path);
        return NULL;
    }
    size_t cap = 1 << 20, n = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (!buf) break;
        if (n == cap) {
            if (cap >= limit) {
                gm_errorf(err, "%s: larger than %zu bytes once inflated", path, limit);
                goto fail;
            }
            cap *= 2;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) break;
            buf = nb;
        }
        int got = gzread(f, buf + n, (unsigned)(cap - n));
        if (got < 0) {
            int code;
            gm_errorf(err, "%s: %s", path, gzerror(f, &code));
            goto fail;
        }
        if (got == 0) {
            gzclose(f);
            *len = n;
            return buf;
        }
        n += (size_t)got;
    }
    gm_errorf(err, "%s: out of memory", path);
fail:
    free(buf);
    gzclose(f);
    return NULL;
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

/* Checks an idx header: unsigned-byte data of rank `rank`; fills dims. */
static int idx_header(const char *path, const uint8_t *buf, size_t len, int rank, uint32_t dims[3],
                      char err[GM_ERR_LEN]) {
    size_t head = 4 + 4 * (size_t)rank;
    if (len < head || buf[0] || buf[1] || buf[2] != 0x08 || buf[3] != rank)
        return gm_errorf(err, "%s: not an idx file of unsigned bytes with rank %d", path, rank);
    size_t total = 1;
    for (int i = 0; i < rank; i++) {
        dims[i] = be32(buf + 4 + 4 * i);
        if (dims[i] < 1 || dims[i] > (i ? MAX_SIDE : MAX_ITEMS))
            return gm_errorf(err, "%s: dimension %d = %u is out of range", path, i, dims[i]);
        total *= dims[i];
    }
    if (len != head + total)
        return gm_errorf(err, "%s: %zu data bytes where the header says %zu", path, len - head, total);
    return 0;
}

int gm_dataset_load(gm_dataset *ds, const char *dir, const char *split, char err[GM_ERR_LEN]) {
    memset(ds, 0, sizeof *ds);
    char ipath[4096], lpath[4096];
    snprintf(ipath, sizeof ipath, "%s/%s-images-idx3-ubyte.gz", dir, split);
    snprintf(lpath, sizeof lpath, "%s/%s-labels-idx1-ubyte.gz", dir, split);
    size_t ilen, llen;
    uint8_t *ib = read_gz(ipath, (size_t)1 << 31, &ilen, err), *lb = NULL;
    uint32_t idims[3], ldims[3];
    if (!ib || idx_header(ipath, ib, ilen, 3, idims, err)) goto fail;
    lb = read_gz(lpath, (size_t)1 << 26, &llen, err);
    if (!lb || idx_header(lpath, lb, llen, 1, ldims, err)) goto fail;
    if (ldims[0] != idims[0]) {
        gm_errorf(err, "%s: %u labels for %u images", lpath, ldims[0], idims[0]);
        goto fail;
    }
    if ((uint64_t)idims[1] * idims[2] > (1u << 22)) {
        gm_errorf(err, "%s: images of %ux%u are too large", ipath, idims[1], idims[2]);
        goto fail;
    }
    ds->n = (int)idims[0];
    ds->height = (int)idims[1];
    ds->width = (int)idims[2];
    ds->dim = ds->height * ds->width;
    size_t count = (size_t)ds->n * ds->dim;
    ds->images = malloc(count * sizeof(float));
    ds->labels = malloc((size_t)ds->n * sizeof(int));
    if (!ds->images || !ds->labels) {
        gm_errorf(err, "%s: out of memory", ipath);
        goto fail;
    }
    for (size_t i = 0; i < count; i++) ds->images[i] = ib[16 + i] / 255.0f;
    for (int i = 0; i < ds->n; i++) ds->labels[i] = lb[8 + i];
    free(ib);
    free(lb);
    return 0;
fail:
    free(ib);
    free(lb);
    gm_dataset_free(ds);
    return -1;
}

void gm_dataset_free(gm_dataset *ds) {
    free(ds->images);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}

void gm_binarize(const gm_dataset *ds, int first, int count, uint64_t seed, float *out) {
    for (int r = 0; r < count; r++) {
        gm_rng rng;
        gm_rng_seed(&rng, seed, (uint64_t)(first + r));
        const float *src = ds->images + (size_t)(first + r) * ds->dim;
        float *dst = out + (size_t)r * ds->dim;
        for (int j = 0; j < ds->dim; j++) dst[j] = gm_rng_uniform(&rng) < src[j] ? 1.0f : 0.0f;
    }
}
