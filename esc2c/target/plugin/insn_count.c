/*
 * QEMU TCG plugin (plugin API version 1, QEMU 7.2): counts the guest instructions executed, exactly,
 * and logs the running count each time execution enters a marker address.
 *
 *   -plugin insn_count.so,mark=0xADDR,out=FILE
 *
 * Every translation block adds its instruction count to one counter when it starts executing (an
 * inline add, no helper call). A block that starts at the marker instead runs a callback which first
 * writes "mark N" (N = instructions executed before the marker) to FILE, then adds its own count. At
 * exit "total N" is written. Blocks only end early on a fault or exception, which the profiled code
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

static void at_mark(unsigned int vcpu, void *udata)
{
    (void)vcpu;
    fprintf(log_file, "mark %" PRIu64 "\n", executed);
    executed += (uint64_t)(uintptr_t)udata;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    (void)id;
    if (qemu_plugin_tb_vaddr(tb) == mark_addr) {
        qemu_plugin_register_vcpu_tb_exec_cb(tb, at_mark, PLUGIN_CB_NO_REGS, (void *)(uintptr_t)n);
    } else {
        qemu_plugin_register_vcpu_tb_exec_inline(tb, PLUGIN_INLINE_ADD_U64, &executed, (uint64_t)n);
    }
}

static void at_exit_cb(qemu_plugin_id_t id, void *udata)
{
    (void)id;
    (void)udata;
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
        } else {
            qemu_plugin_outs("insn_count: unknown argument (expected mark=ADDR,out=FILE)\n");
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
