/*
 * evaldata.h - tiny Fashion-MNIST-format data sets (idx.gz files) for the
 * `gmserve eval` tests: a split of 4 images of 28x28, image i all one grey
 * level, labels 0..3 (gzip through stfile.h's write_gz).
 */
#ifndef GM_EVALDATA_H
#define GM_EVALDATA_H

#include "testutil.h"

/* dir/{split}-images-idx3-ubyte.gz and -labels-idx1-ubyte.gz: 4 images of
 * 28x28, image i all level[i], labels 0..3 */
static inline void evaldata_write_split(const char *dir, const char *split, const uint8_t level[4]) {
    enum { N = 4, D = 28 * 28 };
    static uint8_t buf[16 + N * D];
    const uint8_t head[16] = {0, 0, 8, 3, 0, 0, 0, N, 0, 0, 0, 28, 0, 0, 0, 28};
    memcpy(buf, head, 16);
    for (int i = 0; i < N; i++) memset(buf + 16 + i * D, level[i], D);
    char name[96];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte.gz", split);
    write_gz(dir, name, buf, sizeof buf);
    const uint8_t labels[12] = {0, 0, 8, 1, 0, 0, 0, N, 0, 1, 2, 3};
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte.gz", split);
    write_gz(dir, name, labels, sizeof labels);
}

#endif
