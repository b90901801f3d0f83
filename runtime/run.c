/*
 * run.c - cc_run: walk the model's call list, handing each kernel DLTensors over the arena, the weights
 * and the caller's input and output.
 */
#include <stdio.h>
#include <string.h>

#include "cloudcover.h"

uint32_t cc_profile_steps = UINT32_MAX;   /* all steps (see cloudcover.h) */

size_t cc_arena_bytes(const cc_model *model) {
    return (size_t)model->arena_bytes + (size_t)model->workspace_bytes;
}

static int misaligned(const void *p) { return ((uintptr_t)p & (CC_ALIGN - 1)) != 0; }

/* Point `t` at the bytes tensor `d` lives in; -1 if the tables are inconsistent. */
static int bind_tensor(cc_dl_tensor *t, const cc_tensor *d, uint8_t *arena, const void *input, void *output,
                       const cc_model *model) {
    void *data = NULL;
    switch (d->where) {
    case CC_INPUT: data = (void *)input; break;     /* kernels never write their inputs */
    case CC_OUTPUT:   /* one of the outputs, at its offset in the caller's output buffer */
        if ((size_t)d->offset + d->nbytes > model->output_bytes) return -1;
        data = (uint8_t *)output + d->offset;
        break;
    case CC_CONST: data = (void *)d->data; break;
    case CC_ARENA:
        if ((size_t)d->offset + d->nbytes > model->arena_bytes) return -1;
        data = arena + d->offset;
        break;
    default: return -1;
    }
    t->data = data;
    t->device.device_type = 1;
    t->device.device_id = 0;
    t->ndim = d->ndim;
    t->dtype.code = d->dtype_code;
    t->dtype.bits = d->dtype_bits;
    t->dtype.lanes = 1;
    t->shape = (int64_t *)d->shape;   /* kernels only read shapes */
    t->strides = NULL;
    t->byte_offset = 0;
    return 0;
}

int cc_run(const cc_model *model, void *arena, size_t arena_size, const void *input, void *output) {
    if (model == NULL || arena == NULL || input == NULL || output == NULL) {
        fprintf(stderr, "cloudcover: cc_run: NULL model, arena, input or output\n");
        return -1;
    }
    if (misaligned(arena) || misaligned(input) || misaligned(output)) {
        fprintf(stderr, "cloudcover: cc_run: arena, input and output must be %d-byte aligned\n", CC_ALIGN);
        return -1;
    }
    if (arena_size < cc_arena_bytes(model)) {
        fprintf(stderr, "cloudcover: cc_run: arena of %zu bytes is smaller than the %zu the model needs\n",
                arena_size, cc_arena_bytes(model));
        return -1;
    }
    cc_workspace ws = {(uint8_t *)arena + model->arena_bytes, model->workspace_bytes, 0, 0};
    cc_dl_tensor tensors[CC_MAX_ARGS];
    cc_ffi_any args[CC_MAX_ARGS];
    int rc = 0;
    cc_workspace_bind(&ws);
    for (uint32_t s = 0; s < model->num_steps && s < cc_profile_steps && rc == 0; s++) {
        const cc_step *step = &model->steps[s];
        if (step->num_args > CC_MAX_ARGS) {
            fprintf(stderr, "cloudcover: step %u (%s) takes %u tensors, more than CC_MAX_ARGS\n", s, step->name,
                    step->num_args);
            rc = -1;
            break;
        }
        for (uint16_t a = 0; a < step->num_args; a++) {
            uint16_t ti = model->args[step->first_arg + a];
            if (ti >= model->num_tensors ||
                bind_tensor(&tensors[a], &model->tensors[ti], arena, input, output, model) != 0) {
                fprintf(stderr, "cloudcover: step %u (%s): bad tensor table entry %u\n", s, step->name, ti);
                rc = -1;
                break;
            }
            memset(&args[a], 0, sizeof args[a]);
            args[a].type_index = 7;   /* kTVMFFIDLTensorPtr */
            args[a].v_ptr = &tensors[a];
        }
        if (rc != 0) break;
        ws.top = 0;   /* every kernel frees its scratch before returning; start each from empty */
        if (step->fn(NULL, args, step->num_args, NULL) != 0) {
            fprintf(stderr, "cloudcover: step %u: kernel %s failed\n", s, step->name);
            rc = -1;
        }
    }
    cc_workspace_bind(NULL);
    return rc;
}
