/*
 * idxfile.h - tiny MNIST-format data sets for the `gmserve eval` tests:
 * idx files (gzip) of four 28x28 images, each of one grey level, labelled
 * 0, 1, 2, 3, so that every metric can be worked out by hand.
 */
#ifndef GM_TEST_IDXFILE_H
#define GM_TEST_IDXFILE_H

#include "testutil.h" /* write_gz (stfile.h) */

/* dir/{split}-images-idx3-ubyte.gz and the labels: 4 images of 28x28,
 * image i all level[i] (of 255), label i. */
static inline void idx_write_split(const char *dir, const char *split, const uint8_t level[4]) {
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
