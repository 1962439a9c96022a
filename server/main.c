/*
 * main.c - gmserve's entry point. For now it loads the models named on the
 * command line and reports what they hold; the HTTP daemon follows.
 */
#include <stdio.h>
#include <string.h>

#include "gm/safetensors.h"

int main(int argc, char **argv) {
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            printf("usage: gmserve FILE.safetensors...\n");
            return 0;
        }
        char err[GM_ERR_LEN];
        gm_st *st = gm_st_load(argv[i], err);
        if (!st) {
            fprintf(stderr, "gmserve: %s\n", err);
            rc = 1;
            continue;
        }
        printf("%s: %d tensors\n", argv[i], gm_st_count(st));
        gm_st_free(st);
    }
    return rc;
}
