/*
 * test_runtime.c - unit tests of the runtime against a hand-written model table (no TVM involved).
 * Built with AddressSanitizer + UBSan on the host (ctest), so every arena is malloc'd at its exact size:
 * a read or write past it is a test failure.
 *
 * The fake model: input int8[4] --add_one--> t1 (arena) --add_one--> output int8[4].
 * A second table has two outputs (t1 and its successor) at offsets 0 and CC_ALIGN of the output buffer.
 */
#define TESTING
#include "../infer.c"

#include <assert.h>

static int failures;
#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);  \
            failures++;                                                               \
        }                                                                             \
    } while (0)

static size_t scratch_request = 100;   /* bytes add_one asks the workspace for */

/* out[i] = in[i] + 1, through a workspace temporary like a TVM kernel. */
static int32_t add_one(void *self, const cc_ffi_any *args, int32_t n, cc_ffi_any *ret) {
    (void)self; (void)ret;
    if (n != 2 || args[0].type_index != 7 || args[1].type_index != 7) return -1;
    const cc_dl_tensor *x = args[0].v_ptr, *y = args[1].v_ptr;
    if (x->ndim != 1 || x->shape[0] != 4 || x->dtype.bits != 8 || x->strides != NULL) return -1;
    int8_t *tmp = TVMBackendAllocWorkspace(1, 0, scratch_request, 0, 8);
    if (tmp == NULL) {
        const char *parts[1] = {"workspace exhausted"};
        TVMFFIErrorSetRaisedFromCStrParts("RuntimeError", parts, 1);
        return -1;
    }
    for (int i = 0; i < 4; i++) tmp[i] = (int8_t)(((const int8_t *)x->data)[i] + 1);
    for (int i = 0; i < 4; i++) ((int8_t *)y->data)[i] = tmp[i];
    return TVMBackendFreeWorkspace(1, 0, tmp);
}

static const int64_t shape4[1] = {4};
static const cc_tensor fake_tensors[] = {
    {CC_INPUT, 0, 8, 1, 0, 4, NULL, shape4},
    {CC_ARENA, 0, 8, 1, 0, 4, NULL, shape4},
    {CC_OUTPUT, 0, 8, 1, 0, 4, NULL, shape4},
};
static const uint16_t fake_args[] = {0, 1, 1, 2};
static const cc_step fake_steps[] = {{add_one, "add_one", 0, 2}, {add_one, "add_one", 2, 2}};
const cc_model cc_model_table = {
    .name = "fake", .tensors = fake_tensors, .num_tensors = 3, .args = fake_args, .steps = fake_steps,
    .num_steps = 2, .input_bytes = 4, .output_bytes = 4, .arena_bytes = 64, .workspace_bytes = 256,
    .input_dtype = "int8", .output_dtypes = "int8", .num_outputs = 1,
};

static const cc_tensor two_out_tensors[] = {
    {CC_INPUT, 0, 8, 1, 0, 4, NULL, shape4},
    {CC_OUTPUT, 0, 8, 1, 0, 4, NULL, shape4},
    {CC_OUTPUT, 0, 8, 1, CC_ALIGN, 4, NULL, shape4},
};
static const cc_model two_outputs = {
    .name = "two outputs", .tensors = two_out_tensors, .num_tensors = 3, .args = fake_args, .steps = fake_steps,
    .num_steps = 2, .input_bytes = 4, .output_bytes = CC_ALIGN + 4, .arena_bytes = 0, .workspace_bytes = 256,
    .input_dtype = "int8", .output_dtypes = "int8,int8", .num_outputs = 2,
};

static void test_two_outputs(void) {
    size_t n = cc_arena_bytes(&two_outputs);
    uint8_t *arena = aligned_alloc(CC_ALIGN, n);
    int8_t *in = aligned_alloc(CC_ALIGN, CC_ALIGN), *out = aligned_alloc(CC_ALIGN, 2 * CC_ALIGN);
    memset(out, 99, 2 * CC_ALIGN);
    for (int i = 0; i < 4; i++) in[i] = (int8_t)(10 * i);
    CHECK(cc_run(&two_outputs, arena, n, in, out) == 0);
    for (int i = 0; i < 4; i++) CHECK(out[i] == 10 * i + 1 && out[CC_ALIGN + i] == 10 * i + 2);
    CHECK(out[4] == 99 && out[CC_ALIGN - 1] == 99);                     /* the gap is never written */
    free(arena); free(in); free(out);
}

int cc_model_run(const void *input, void *output) {
    size_t n = cc_arena_bytes(&cc_model_table);
    void *arena = aligned_alloc(CC_ALIGN, n);
    int rc = cc_run(&cc_model_table, arena, n, input, output);
    free(arena);
    return rc;
}

static void test_run(void) {
    size_t n = cc_arena_bytes(&cc_model_table);
    uint8_t *arena = aligned_alloc(CC_ALIGN, n + CC_ALIGN);
    int8_t *in = aligned_alloc(CC_ALIGN, CC_ALIGN), *out = aligned_alloc(CC_ALIGN, CC_ALIGN);
    for (int i = 0; i < 4; i++) in[i] = (int8_t)(10 * i);
    CHECK(cc_run(&cc_model_table, arena, n, in, out) == 0);
    for (int i = 0; i < 4; i++) CHECK(out[i] == 10 * i + 2);
    /* refusals, each with a message */
    CHECK(cc_run(&cc_model_table, arena, n - 1, in, out) == -1);        /* arena too small */
    CHECK(cc_run(&cc_model_table, arena + 1, n, in, out) == -1);        /* misaligned arena */
    CHECK(cc_run(&cc_model_table, arena, n, in + 1, out) == -1);        /* misaligned input */
    CHECK(cc_run(&cc_model_table, NULL, n, in, out) == -1);
    scratch_request = 1000;                                             /* more than the workspace */
    CHECK(cc_run(&cc_model_table, arena, n, in, out) == -1);
    scratch_request = 100;
    CHECK(cc_run(&cc_model_table, arena, n, in, out) == 0);             /* and it recovers */
    free(arena); free(in); free(out);
}

static void test_workspace(void) {
    uint8_t *pool = aligned_alloc(CC_ALIGN, 512);
    cc_workspace ws = {pool, 512, 0, 0};
    uint8_t *a = cc_workspace_alloc(&ws, 10), *b = cc_workspace_alloc(&ws, 100);
    CHECK(a != NULL && b != NULL && b > a);
    CHECK(((uintptr_t)a % CC_ALIGN) == 0 && ((uintptr_t)b % CC_ALIGN) == 0);
    memset(a, 1, 10); memset(b, 2, 100);
    CHECK(cc_workspace_alloc(&ws, 400) == NULL);                        /* full */
    CHECK(cc_workspace_free(&ws, b + 1) == -1);                         /* not a block start */
    CHECK(cc_workspace_free(&ws, b) == 0);
    CHECK(cc_workspace_free(&ws, a) == 0);
    CHECK(ws.top == 0);
    CHECK(cc_workspace_free(&ws, a) == -1);                             /* double free */
    CHECK(cc_workspace_alloc(&ws, 512) == NULL);                        /* header does not fit */
    CHECK(cc_workspace_alloc(NULL, 8) == NULL);                         /* nothing bound */
    free(pool);
}

static void test_count_inputs(void) {
    CHECK(cc_count_inputs("x", 0, 4) == 0);
    CHECK(cc_count_inputs("x", 12, 4) == 3);
    CHECK(cc_count_inputs("x", 13, 4) == -1);
    CHECK(cc_count_inputs("x", 3, 4) == -1);
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert(f != NULL);
    fwrite(data, 1, n, f);
    fclose(f);
}

static void test_run_file(const char *dir) {
    char in[4096], out[4096];
    snprintf(in, sizeof in, "%s/test_in.bin", dir);
    snprintf(out, sizeof out, "%s/test_out.bin", dir);
    int8_t x[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    write_file(in, x, 8);
    CHECK(run_file(in, out) == 0);
    FILE *f = fopen(out, "rb");
    int8_t y[9];
    size_t got = f ? fread(y, 1, 9, f) : 0;
    if (f) fclose(f);
    CHECK(got == 8);
    for (size_t i = 0; i < got; i++) CHECK(y[i] == x[i] + 2);
    write_file(in, x, 7);                                               /* not a whole number */
    CHECK(run_file(in, out) == 2);
    CHECK(run_file("/nonexistent/in.bin", out) == 1);
}

int main(int argc, char **argv) {
    print_info(&cc_model_table);
    test_workspace();
    test_run();
    test_two_outputs();
    test_count_inputs();
    test_run_file(argc > 1 ? argv[1] : ".");
    if (failures) fprintf(stderr, "test_runtime: %d check(s) failed\n", failures);
    else fprintf(stderr, "test_runtime: all checks passed\n");
    return failures != 0;
}
