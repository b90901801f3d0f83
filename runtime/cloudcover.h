/*
 * cloudcover.h - the whole API of the cloudcover C runtime.
 *
 * A model compiled by `cloudcover compile` is three things linked together:
 *
 *   kernels.o   the model's TIR kernels, built by TVM/LLVM (one function per fused operator)
 *   model.c     generated tables: weights, tensor descriptors, the call list, the static arena
 *   this runtime: cc_run() walks the call list, and the three backend symbols the kernels call
 *
 * There is no TVM runtime on the target: the kernels only need TVMBackendAllocWorkspace,
 * TVMBackendFreeWorkspace and TVMFFIErrorSetRaisedFromCStrParts (workspace.c).
 *
 * Arena layout (one caller-owned block, CC_ALIGN-byte aligned, cc_arena_bytes(model) long):
 *
 *   0                                model->arena_bytes          + model->workspace_bytes
 *   +--------------------------------+-----------------------------+
 *   | planned intermediates          | kernel workspace            |
 *   | offsets from the liveness plan | LIFO scratch, reset before  |
 *   | (buffers not live at the same  | each kernel call; no malloc |
 *   |  time share bytes)             |                             |
 *   +--------------------------------+-----------------------------+
 *
 * The model input and output are the caller's buffers (CC_ALIGN-byte aligned); the first kernel reads the
 * input in place and the last kernel writes the output in place. Input and outputs have the model's own
 * dtypes (int8, uint8 or float32, as the tables say: input_dtype, output_dtypes). A model with several
 * outputs writes them into the one output buffer, each at its tensor's `offset` (CC_ALIGN-aligned, in
 * output order; the gaps between them are never written).
 *
 * Errors are reported where they happen (a line on stderr starting "cloudcover:") and returned as -1.
 */
#ifndef CLOUDCOVER_H
#define CLOUDCOVER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CC_ALIGN 64      /* alignment of the arena, every planned buffer, weights, input and output */
#define CC_MAX_ARGS 32   /* most tensors one kernel takes (compile refuses more) */

/* ----------------------------------------------------------------------------------------------------
 * The kernel ABI: layout-compatible copies of DLPack's DLTensor and tvm-ffi's TVMFFIAny, so that neither
 * header is needed to build for the target.
 */
typedef struct { int32_t device_type; int32_t device_id; } cc_dl_device;      /* device_type 1 = CPU */
typedef struct { uint8_t code; uint8_t bits; uint16_t lanes; } cc_dl_dtype;   /* code 0 int, 1 uint, 2 float */
typedef struct {
    void *data;            /* first element */
    cc_dl_device device;   /* always {1, 0} */
    int32_t ndim;          /* number of dimensions */
    cc_dl_dtype dtype;     /* element type */
    int64_t *shape;        /* [ndim] */
    int64_t *strides;      /* NULL: compact row-major */
    uint64_t byte_offset;  /* always 0 */
} cc_dl_tensor;
typedef struct {
    int32_t type_index;    /* 7 = DLTensor pointer */
    uint32_t zero_padding;
    union { int64_t v_int64; double v_float64; void *v_ptr; };
} cc_ffi_any;
/* Every kernel: int32_t __tvm_ffi_<name>(NULL, args, num_args, NULL); 0 on success, -1 after raising. */
typedef int32_t (*cc_kernel_fn)(void *self, const cc_ffi_any *args, int32_t num_args, cc_ffi_any *ret);

/* ----------------------------------------------------------------------------------------------------
 * Model tables (written by `cloudcover compile` into model.c; read-only).
 */
enum cc_where { CC_INPUT = 0, CC_OUTPUT = 1, CC_CONST = 2, CC_ARENA = 3 };

typedef struct {
    uint8_t where;          /* enum cc_where */
    uint8_t dtype_code;     /* DLPack type code */
    uint8_t dtype_bits;     /* 8, 32 ... */
    uint8_t ndim;           /* 0..8 */
    uint32_t offset;        /* CC_ARENA: byte offset from the arena start; CC_OUTPUT: from the output's */
    uint32_t nbytes;        /* size of the whole tensor */
    const void *data;       /* CC_CONST: the weights; otherwise NULL */
    const int64_t *shape;   /* [ndim] (never NULL) */
} cc_tensor;

typedef struct {
    cc_kernel_fn fn;        /* the TVM kernel */
    const char *name;       /* its name, for error messages */
    uint16_t first_arg;     /* index into cc_model.args */
    uint16_t num_args;      /* tensors it takes, output last */
} cc_step;

typedef struct {
    const char *name;                 /* model name, e.g. "model_int8 (rv64gc)" */
    const cc_tensor *tensors;         /* [num_tensors] */
    uint32_t num_tensors;
    const uint16_t *args;             /* kernel arguments: indices into tensors */
    const cc_step *steps;             /* [num_steps], run in order */
    uint32_t num_steps;
    uint32_t input_bytes;             /* size of one input tensor */
    uint32_t output_bytes;            /* size of one output buffer (all outputs, at their offsets) */
    uint32_t arena_bytes;             /* planned intermediates */
    uint32_t workspace_bytes;         /* kernel scratch bound */
    const char *input_dtype;          /* "int8", "uint8" or "float32" (NULL in tables older than this field) */
    const char *output_dtypes;        /* one per output, comma-separated, e.g. "float32" or "float32,int8" */
    uint32_t num_outputs;             /* tensors with where == CC_OUTPUT */
} cc_model;

/* ----------------------------------------------------------------------------------------------------
 * Running a model.
 */

/* Bytes of arena cc_run needs for `model` (intermediates + workspace). */
size_t cc_arena_bytes(const cc_model *model);

/* Run one inference. `arena` (CC_ALIGN-aligned, arena_size >= cc_arena_bytes(model)) is owned by the caller
 * and only used during the call; `input` holds model->input_bytes, `output` receives model->output_bytes,
 * both CC_ALIGN-aligned. Returns 0, or -1 after printing why. Not reentrant (the workspace is bound to the
 * running call because the kernels' TVMBackendAllocWorkspace has no context argument). */
int cc_run(const cc_model *model, void *arena, size_t arena_size, const void *input, void *output);

/* Profiling (off by default): cc_run runs only the first cc_profile_steps steps of the call list. The
 * per-kernel profile (riscv/profile.py) counts instructions with 0, 1, ... all steps: step k costs
 * count(k + 1) - count(k), and the steps add up to the whole inference exactly. */
extern uint32_t cc_profile_steps;

/* The generated model: its tables, and cc_run over a static arena inside model.c. */
extern const cc_model cc_model_table;
int cc_model_run(const void *input, void *output);

/* ----------------------------------------------------------------------------------------------------
 * Workspace (workspace.c): a LIFO scratch stack that the backend symbols allocate from.
 */
typedef struct {
    uint8_t *base;     /* CC_ALIGN-aligned start */
    size_t size;       /* bytes available */
    size_t top;        /* bytes in use */
    size_t high;       /* high-water mark since bind */
} cc_workspace;

/* Make `ws` the stack TVMBackendAllocWorkspace allocates from (NULL: none; allocations then fail). */
void cc_workspace_bind(cc_workspace *ws);
void *cc_workspace_alloc(cc_workspace *ws, size_t nbytes);   /* NULL (and a message) when full */
int cc_workspace_free(cc_workspace *ws, void *ptr);           /* -1 unless ptr is the newest block */

/* The backend symbols the kernels call (TVM's names and signatures). */
void *TVMBackendAllocWorkspace(int device_type, int device_id, uint64_t nbytes, int dtype_code_hint,
                               int dtype_bits_hint);
int TVMBackendFreeWorkspace(int device_type, int device_id, void *ptr);
void TVMFFIErrorSetRaisedFromCStrParts(const char *kind, const char **message_parts, int32_t num_parts);

#ifdef __cplusplus
}
#endif
#endif /* CLOUDCOVER_H */
