/*
 * workspace.c - the three backend symbols TVM kernels call, over a LIFO scratch stack.
 *
 * Kernels allocate their temporaries (padded inputs, fused intermediates) with TVMBackendAllocWorkspace and
 * free them in reverse order before returning. We serve them from the workspace part of the arena: a stack
 * with a bump pointer, no malloc. The one piece of mutable state outside the arena is `bound`, the stack of
 * the running cc_run call: the kernels' ABI gives the allocator no context argument.
 */
#include <stdio.h>
#include <string.h>

#include "cloudcover.h"

/* Block header: a block's start offset is stored CC_ALIGN bytes before the data, so free can pop. */
#define CC_HDR CC_ALIGN

static cc_workspace *bound;   /* the stack of the running inference, or NULL */

static size_t align_up(size_t n) { return (n + (CC_ALIGN - 1)) & ~(size_t)(CC_ALIGN - 1); }

void cc_workspace_bind(cc_workspace *ws) { bound = ws; }

void *cc_workspace_alloc(cc_workspace *ws, size_t nbytes) {
    if (ws == NULL) {
        fprintf(stderr, "cloudcover: workspace allocation of %zu bytes outside cc_run\n", nbytes);
        return NULL;
    }
    size_t start = ws->top;
    size_t need = CC_HDR + align_up(nbytes);
    if (nbytes > ws->size || need > ws->size - start) {
        fprintf(stderr, "cloudcover: workspace full: %zu bytes requested, %zu of %zu in use\n",
                nbytes, ws->top, ws->size);
        return NULL;
    }
    uint8_t *block = ws->base + start;
    memcpy(block, &start, sizeof start);   /* header: where this block began */
    ws->top = start + need;
    if (ws->top > ws->high) ws->high = ws->top;
    return block + CC_HDR;
}

int cc_workspace_free(cc_workspace *ws, void *ptr) {
    if (ws == NULL || ptr == NULL) return -1;
    uint8_t *p = ptr;
    if (p < ws->base + CC_HDR || p > ws->base + ws->top || (size_t)(p - ws->base) % CC_ALIGN != 0) {
        fprintf(stderr, "cloudcover: workspace free of a pointer that is not a workspace block\n");
        return -1;
    }
    size_t start;
    memcpy(&start, p - CC_HDR, sizeof start);
    if (ws->base + start + CC_HDR != p) {
        fprintf(stderr, "cloudcover: workspace free of a pointer that is not a block start\n");
        return -1;
    }
    if (start >= ws->top) {
        fprintf(stderr, "cloudcover: workspace double free\n");
        return -1;
    }
    /* LIFO: freeing the newest block pops it; freeing an older one pops everything above it too
       (TVM frees in reverse allocation order, so this only matters for error paths). */
    ws->top = start;
    return 0;
}

void *TVMBackendAllocWorkspace(int device_type, int device_id, uint64_t nbytes, int dtype_code_hint,
                               int dtype_bits_hint) {
    (void)device_type; (void)device_id; (void)dtype_code_hint; (void)dtype_bits_hint;
    return cc_workspace_alloc(bound, (size_t)nbytes);
}

int TVMBackendFreeWorkspace(int device_type, int device_id, void *ptr) {
    (void)device_type; (void)device_id;
    return cc_workspace_free(bound, ptr);
}

void TVMFFIErrorSetRaisedFromCStrParts(const char *kind, const char **message_parts, int32_t num_parts) {
    fprintf(stderr, "cloudcover: kernel raised %s: ", kind ? kind : "Error");
    for (int32_t i = 0; i < num_parts; i++) fputs(message_parts[i] ? message_parts[i] : "", stderr);
    fputc('\n', stderr);
}

/* LLVM-built kernels call the workspace functions through these weak pointers (NULL would crash). */
void *(*__TVMBackendAllocWorkspace)(int, int, uint64_t, int, int) = TVMBackendAllocWorkspace;
int (*__TVMBackendFreeWorkspace)(int, int, void *) = TVMBackendFreeWorkspace;
