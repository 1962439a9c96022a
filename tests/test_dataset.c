/*
 * test_dataset.c - the idx.gz reader refuses malformed files with a message
 * naming the file and the problem, reads a well-formed one exactly, and the
 * fixed binarization is reproducible and unbiased.
 */
#include <zlib.h>

#include "dataset.h"
#include "gm/rng.h"
#include "testutil.h"

static char dir[] = "build/test-logs/idx";

/* An idx header of unsigned bytes, rank n, big-endian dims. */
static size_t header(uint8_t *buf, int n, const uint32_t *dims) {
    buf[0] = buf[1] = 0;
    buf[2] = 0x08;
    buf[3] = (uint8_t)n;
    for (int i = 0; i < n; i++)
        for (int b = 0; b < 4; b++) buf[4 + 4 * i + b] = (uint8_t)(dims[i] >> (24 - 8 * b));
    return 4 + 4 * (size_t)n;
}

/* images: 3 of 2x2 (pixel values 0..11); labels 3 */
static void write_split(const char *split, int magic_ok, int image_bytes, int labels) {
    uint8_t buf[64];
    char name[64];
    uint32_t idims[3] = {3, 2, 2}, ldims[1] = {(uint32_t)labels};
    size_t n = header(buf, 3, idims);
    if (!magic_ok) buf[2] = 0x0D; /* float data: not supported */
    for (int i = 0; i < image_bytes; i++) buf[n + i] = (uint8_t)(i * 20);
    snprintf(name, sizeof name, "%s-images-idx3-ubyte.gz", split);
    write_gz(dir, name, buf, n + image_bytes);
    n = header(buf, 1, ldims);
    for (int i = 0; i < labels; i++) buf[n + i] = (uint8_t)(i % 10);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte.gz", split);
    write_gz(dir, name, buf, n + labels);
}

static void expect_refusal(const char *split, const char *words) {
    gm_dataset ds;
    char err[GM_ERR_LEN] = "";
    assert_int_equal(gm_dataset_load(&ds, dir, split, err), -1);
    if (!strstr(err, words) || !strstr(err, split)) {
        print_error("expected \"%s\" naming %s, got: %s\n", words, split, err);
        fail();
    }
    assert_null(ds.images);
}

static void test_reader(void **state) {
    assert_int_equal(system("mkdir -p build/test-logs/idx"), 0);
    write_split("good", 1, 12, 3);
    gm_dataset ds;
    char err[GM_ERR_LEN];
    assert_int_equal(gm_dataset_load(&ds, dir, "good", err), 0);
    assert_int_equal(ds.n, 3);
    assert_int_equal(ds.dim, 4);
    for (int i = 0; i < 12; i++) assert_true(fabsf(ds.images[i] - (float)(i * 20) / 255.0f) < 1e-7f);
    assert_int_equal(ds.labels[2], 2);
    gm_dataset_free(&ds);

    write_split("magic", 0, 12, 3);
    expect_refusal("magic", "not an idx file");
    write_split("short", 1, 11, 3);
    expect_refusal("short", "11 data bytes where the header says 12");
    write_split("long", 1, 13, 3);
    expect_refusal("long", "13 data bytes");
    write_split("labels", 1, 12, 2);
    expect_refusal("labels", "2 labels for 3 images");
    expect_refusal("missing", "cannot open");
    write_gz(dir, "junk-images-idx3-ubyte.gz", "\0\0\x08", 3); /* shorter than a header */
    expect_refusal("junk", "not an idx file");
}

/* The fixed binarization: reproducible, and each pixel is 1 with
 * probability equal to its intensity (checked on a synthetic dataset). */
static void test_binarization_is_fixed_and_unbiased(void **state) {
    enum { N = 4000, DIM = 16 };
    gm_dataset ds = {.n = N, .height = 4, .width = 4, .dim = DIM};
    ds.images = malloc(sizeof(float) * N * DIM);
    for (int i = 0; i < N * DIM; i++) ds.images[i] = (float)(i % DIM) / (DIM - 1);
    float *a = malloc(sizeof(float) * N * DIM), *b = malloc(sizeof(float) * N * DIM);
    gm_binarize(&ds, 0, N, GM_BINARIZE_SEED, a);
    gm_binarize(&ds, 100, N - 100, GM_BINARIZE_SEED, b);
    assert_memory_equal(a + 100 * DIM, b, sizeof(float) * (N - 100) * DIM); /* depends only on the index */
    for (int j = 0; j < DIM; j++) {
        double ones = 0, q = (double)j / (DIM - 1);
        for (int n = 0; n < N; n++) ones += a[n * DIM + j];
        assert_true(fabs(ones / N - q) <= 5 * sqrt(q * (1 - q) / N) + 1e-12);
    }
    free(a);
    free(b);
    free(ds.images);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reader),
        cmocka_unit_test(test_binarization_is_fixed_and_unbiased),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
