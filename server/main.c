/*
 * main.c - gmserve's entry point. Until the HTTP daemon lands (issue 3) it
 * loads each model file named on the command line exactly as the daemon
 * will, and prints what it serves or why it was refused, so that a user can
 * check an export before deploying it.
 */
#include <stdio.h>
#include <string.h>

#include "gm/model.h"

static void describe(const char *path, const gm_model *m) {
    const gm_model_info *in = gm_model_get_info(m);
    printf("%s: %s, image %dx%dx%d", path, gm_family_name(in->family), in->height, in->width, in->channels);
    if (in->latent_dim) printf(", latent %d", in->latent_dim);
    if (in->num_classes) printf(", %d classes", in->num_classes);
    printf(", operations:");
    for (int op = 0; op < GM_OP_COUNT; op++)
        if (in->supports[op]) printf(" %s", gm_op_name((gm_op)op));
    printf("\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        printf("usage: gmserve MODEL.safetensors...\n"
               "Loads and validates each model file (SPEC.md section 1) and prints what it serves.\n"
               "Exit status 1 if any file is refused. The HTTP daemon is not built yet.\n");
        return argc < 2;
    }
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        char err[GM_ERR_LEN];
        gm_model *m = gm_model_load(argv[i], err);
        if (!m) {
            fprintf(stderr, "gmserve: %s\n", err);
            rc = 1;
            continue;
        }
        describe(argv[i], m);
        gm_model_free(m);
    }
    return rc;
}
