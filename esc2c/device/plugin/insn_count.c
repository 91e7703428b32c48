/*
 * QEMU TCG plugin (plugin API version 1, QEMU 7.2): counts the guest instructions executed, exactly,
 * and logs the running count each time execution enters a marker address.
 *
 *   -plugin insn_count.so,mark=0xADDR,out=FILE[,funcs=RANGES,window=K]
 *
 * Every translation block adds its instruction count to one counter when it starts executing (an
 * inline add, no helper call). A block that starts at the marker instead runs a callback which first
 * writes "mark N" (N = instructions executed before the marker) to FILE, then adds its own count. At
 * exit "total N" is written.
 *
 * With funcs=RANGES (a file of "START END" hex address lines, sorted, one per function) each block
 * also adds its count to the function it starts in, and at exit "func I N" gives, for function line I,
 * the instructions executed between the 1st and the K-th mark (window=K: one inference is K = layers
 * + 2 marks). Blocks only end early on a fault or exception, which the profiled code
 * never takes, so the counts are exact and the same on every run.
 *
 * Debian ships no qemu-plugin.h: the few API functions used are declared here.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_info_t;
enum { PLUGIN_INLINE_ADD_U64 = 0 };
enum { PLUGIN_CB_NO_REGS = 0 };

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id,
                                           void (*cb)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb));
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, int op, void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, void (*cb)(unsigned int vcpu, void *udata),
                                          int flags, void *udata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, void (*cb)(qemu_plugin_id_t id, void *udata),
                                    void *udata);
void qemu_plugin_outs(const char *text);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t executed;
static uint64_t mark_addr = UINT64_MAX;
static FILE *log_file;

/* optional per-function counts */
static size_t n_funcs;
static uint64_t *func_lo, *func_hi, *func_count, *func_begin, *func_end;
static uint64_t marks_seen, window;

struct mark_block {
    uint64_t n;
    uint64_t *func;
};

static uint64_t *func_counter(uint64_t addr)
{
    static uint64_t unused;
    size_t lo = 0, hi = n_funcs;
    if (n_funcs == 0) {
        return &unused;
    }
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (addr < func_lo[mid]) {
            hi = mid;
        } else if (addr >= func_hi[mid]) {
            lo = mid + 1;
        } else {
            return &func_count[mid];
        }
    }
    return &func_count[n_funcs]; /* the block starts in no listed function */
}

static void at_mark(unsigned int vcpu, void *udata)
{
    const struct mark_block *b = udata;
    (void)vcpu;
    fprintf(log_file, "mark %" PRIu64 "\n", executed);
    marks_seen++;
    if (n_funcs && marks_seen == 1) {
        memcpy(func_begin, func_count, (n_funcs + 1) * sizeof(uint64_t));
    }
    if (n_funcs && marks_seen == window) {
        memcpy(func_end, func_count, (n_funcs + 1) * sizeof(uint64_t));
    }
    executed += b->n;
    *b->func += b->n;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    uint64_t vaddr = qemu_plugin_tb_vaddr(tb);
    (void)id;
    if (vaddr == mark_addr) {
        struct mark_block *b = malloc(sizeof(*b)); /* one per translation of the marker, kept for good */
        b->n = n;
        b->func = func_counter(vaddr);
        qemu_plugin_register_vcpu_tb_exec_cb(tb, at_mark, PLUGIN_CB_NO_REGS, b);
        return;
    }
    qemu_plugin_register_vcpu_tb_exec_inline(tb, PLUGIN_INLINE_ADD_U64, &executed, (uint64_t)n);
    if (n_funcs) {
        qemu_plugin_register_vcpu_tb_exec_inline(tb, PLUGIN_INLINE_ADD_U64, func_counter(vaddr), (uint64_t)n);
    }
}

static int load_funcs(const char *path)
{
    FILE *f = fopen(path, "r");
    size_t cap = 0;
    unsigned long long lo, hi;
    if (f == NULL) {
        return -1;
    }
    while (fscanf(f, "%llx %llx", &lo, &hi) == 2) {
        if (n_funcs == cap) {
            cap = cap ? 2 * cap : 256;
            func_lo = realloc(func_lo, cap * sizeof(uint64_t));
            func_hi = realloc(func_hi, cap * sizeof(uint64_t));
        }
        func_lo[n_funcs] = lo;
        func_hi[n_funcs] = hi;
        n_funcs++;
    }
    fclose(f);
    func_count = calloc(n_funcs + 1, sizeof(uint64_t));
    func_begin = calloc(n_funcs + 1, sizeof(uint64_t));
    func_end = calloc(n_funcs + 1, sizeof(uint64_t));
    return 0;
}

static void at_exit_cb(qemu_plugin_id_t id, void *udata)
{
    (void)id;
    (void)udata;
    if (n_funcs && marks_seen >= window) {
        for (size_t i = 0; i < n_funcs; i++) {
            if (func_end[i] != func_begin[i]) {
                fprintf(log_file, "func %zu %" PRIu64 "\n", i, func_end[i] - func_begin[i]);
            }
        }
        fprintf(log_file, "unlisted %" PRIu64 "\n", func_end[n_funcs] - func_begin[n_funcs]);
    }
    fprintf(log_file, "total %" PRIu64 "\n", executed);
    fflush(log_file);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const struct qemu_info_t *info,
                                                               int argc, char **argv)
{
    const char *out = NULL;
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "mark=", 5) == 0) {
            mark_addr = strtoull(argv[i] + 5, NULL, 0) & ~(uint64_t)1; /* drop the Thumb bit */
        } else if (strncmp(argv[i], "out=", 4) == 0) {
            out = argv[i] + 4;
        } else if (strncmp(argv[i], "funcs=", 6) == 0) {
            if (load_funcs(argv[i] + 6) != 0) {
                qemu_plugin_outs("insn_count: cannot read funcs=FILE\n");
                return -1;
            }
        } else if (strncmp(argv[i], "window=", 7) == 0) {
            window = strtoull(argv[i] + 7, NULL, 0);
        } else {
            qemu_plugin_outs("insn_count: unknown argument (expected mark=ADDR,out=FILE[,funcs=FILE,window=K])\n");
            return -1;
        }
    }
    if (out == NULL || (log_file = fopen(out, "w")) == NULL) {
        qemu_plugin_outs("insn_count: out=FILE is missing or cannot be written\n");
        return -1;
    }
    setvbuf(log_file, NULL, _IOLBF, 0);
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, at_exit_cb, NULL);
    return 0;
}
