/*
 * infer.c - cloudcover-infer: run the compiled model over a file of input tensors.
 *
 *   cloudcover-infer INPUT OUTPUT   INPUT holds N input tensors back to back (N may be 0), raw little-endian
 *                                   values of the model's input dtype (int8, uint8 or float32: --info);
 *                                   OUTPUT receives N output buffers back to back (output_bytes each: the
 *                                   model's outputs at their offsets, in their own dtypes).
 *   cloudcover-infer --info         print the model's sizes as JSON.
 *   cloudcover-infer INPUT OUTPUT --steps=K   profiling: run only the first K kernel calls of each inference
 *                                   (OUTPUT is then not the model's output; see riscv/profile.py).
 *
 * INPUT's size must be a whole number of input tensors; anything else is refused before any inference.
 * OUTPUT is written as OUTPUT.part and renamed when every inference succeeded, so a failed run leaves no
 * partial OUTPUT behind. Buffers are allocated once at start-up; the inference loop does no allocation.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cloudcover.h"

/* How many inputs a file of `file_bytes` holds; -1 (and a message) if not a whole number. */
long cc_count_inputs(const char *path, long long file_bytes, size_t input_bytes) {
    if (file_bytes < 0 || input_bytes == 0 || file_bytes % (long long)input_bytes != 0) {
        fprintf(stderr,
                "cloudcover-infer: %s: %lld bytes is not a whole number of model inputs (%zu bytes each)\n",
                path, file_bytes, input_bytes);
        return -1;
    }
    return (long)(file_bytes / (long long)input_bytes);
}

static void print_info(const cc_model *m) {
    printf("{\"name\": \"%s\", \"input_bytes\": %u, \"output_bytes\": %u, \"arena_bytes\": %u, "
           "\"workspace_bytes\": %u, \"steps\": %u, \"input_dtype\": \"%s\", \"output_dtypes\": \"%s\", "
           "\"num_outputs\": %u}\n",
           m->name, m->input_bytes, m->output_bytes, m->arena_bytes, m->workspace_bytes, m->num_steps,
           m->input_dtype ? m->input_dtype : "int8", m->output_dtypes ? m->output_dtypes : "int8",
           m->num_outputs ? m->num_outputs : 1u);
}

/* Run every input of `in` through the model into `out`; returns the process exit status. */
static int run_file(const char *in_path, const char *out_path) {
    const cc_model *m = &cc_model_table;
    struct stat st;
    errno = 0;
    if (stat(in_path, &st) != 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "cloudcover-infer: %s: %s\n", in_path, errno ? strerror(errno) : "not a regular file");
        return 1;
    }
    long n = cc_count_inputs(in_path, (long long)st.st_size, m->input_bytes);
    if (n < 0) return 2;
    FILE *in = fopen(in_path, "rb");
    if (in == NULL) {
        fprintf(stderr, "cloudcover-infer: %s: %s\n", in_path, strerror(errno));
        return 1;
    }
    char *part = malloc(strlen(out_path) + sizeof ".part");
    if (part == NULL) {
        fprintf(stderr, "cloudcover-infer: out of memory\n");
        fclose(in);
        return 1;
    }
    strcpy(part, out_path);
    strcat(part, ".part");
    FILE *out = fopen(part, "wb");
    if (out == NULL) {
        fprintf(stderr, "cloudcover-infer: %s: %s\n", part, strerror(errno));
        free(part);
        fclose(in);
        return 1;
    }
    size_t in_alloc = (m->input_bytes + CC_ALIGN - 1) / CC_ALIGN * CC_ALIGN;
    size_t out_alloc = (m->output_bytes + CC_ALIGN - 1) / CC_ALIGN * CC_ALIGN;
    uint8_t *x = aligned_alloc(CC_ALIGN, in_alloc);
    uint8_t *y = aligned_alloc(CC_ALIGN, out_alloc);
    int rc = 0;
    if (x == NULL || y == NULL) {
        fprintf(stderr, "cloudcover-infer: out of memory\n");
        rc = 1;
    } else {
        memset(y, 0, out_alloc);   /* the gaps between several outputs are written as zeros, never garbage */
    }
    for (long i = 0; i < n && rc == 0; i++) {
        if (fread(x, 1, m->input_bytes, in) != m->input_bytes) {
            fprintf(stderr, "cloudcover-infer: %s: short read at input %ld\n", in_path, i);
            rc = 1;
        } else if (cc_model_run(x, y) != 0) {
            fprintf(stderr, "cloudcover-infer: inference %ld failed\n", i);
            rc = 3;
        } else if (fwrite(y, 1, m->output_bytes, out) != m->output_bytes) {
            fprintf(stderr, "cloudcover-infer: %s: write failed\n", out_path);
            rc = 1;
        }
    }
    free(x);
    free(y);
    fclose(in);
    if (fclose(out) != 0 && rc == 0) {
        fprintf(stderr, "cloudcover-infer: %s: write failed\n", part);
        rc = 1;
    }
    if (rc == 0 && rename(part, out_path) != 0) {
        fprintf(stderr, "cloudcover-infer: %s: %s\n", out_path, strerror(errno));
        rc = 1;
    }
    if (rc != 0) remove(part);
    free(part);
    return rc;
}

#ifndef TESTING
int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--info") == 0) {
        print_info(&cc_model_table);
        return 0;
    }
    if (argc == 4 && strncmp(argv[3], "--steps=", 8) == 0) {
        char *end;
        unsigned long k = strtoul(argv[3] + 8, &end, 10);
        if (*end != '\0' || end == argv[3] + 8 || k > cc_model_table.num_steps) {
            fprintf(stderr, "cloudcover-infer: %s: expected --steps=K with K in 0..%u\n", argv[3],
                    cc_model_table.num_steps);
            return 2;
        }
        cc_profile_steps = (uint32_t)k;
        argc = 3;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: %s INPUT OUTPUT [--steps=K]   (INPUT: N int8 tensors of %u bytes; OUTPUT: N of "
                        "%u bytes; --steps: profiling, run only the first K kernel calls)\n"
                        "       %s --info\n",
                argv[0], cc_model_table.input_bytes, cc_model_table.output_bytes, argv[0]);
        return 2;
    }
    return run_file(argv[1], argv[2]);
}
#endif
