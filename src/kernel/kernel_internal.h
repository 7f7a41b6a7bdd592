/*
 * kernel/kernel_internal.h - what the kernel's files (process.c, syscall.c, agent.c) and the
 * built-in tools (src/tools/) share. Private to the library.
 */
#ifndef LLMOS_KERNEL_INTERNAL_H
#define LLMOS_KERNEL_INTERNAL_H

#include "llmos/kernel.h"

struct kproc {
    kproc_info info;
    kctx ctx;      /* the privileged context: trusted text and handles only */
    quarantine *q; /* the process's untrusted values */
};

struct kernel {
    kernel_config cfg;
    char principal[64];
    policy *own_policy; /* when cfg.flow was NULL */
    const policy *flow;
    audit *log;
    ktool *tools; /* builtin + extra, n_tools */
    size_t n_tools;
    llm_stream_fn out_fn; /* kernel_set_output */
    void *out_ctx;
    const atomic_bool *cancel;
};

/* Load / save / free one process (process.c). */
LLMOS_NODISCARD llmos_err kproc_load(store *s, int64_t pid, kproc **out);
LLMOS_NODISCARD llmos_err kproc_save(store *s, const kproc *p);
LLMOS_NODISCARD llmos_err kproc_new_pid(store *s, int64_t *pid);
void kproc_free(kproc *p);

/* Deliver a message from process pid (send_message). */
void kernel_deliver(kernel *k, int64_t pid, const char *recipient, const char *text);

/* Audit helper: a record of kind with payload built by json_pack; failures are logged, since
 * the caller's operation already happened (the caller decides whether to go on). */
llmos_err kernel_audit_rec(kernel *k, const char *kind, json_t *payload_stolen);

/* Tools defined in src/tools/. */
extern const ktool ktool_send_message;

#endif
