/* Per-function guest instruction counts (by the symbol of each translation block's first
   instruction), the top 40 printed at exit, plus the total. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb; struct qemu_plugin_insn;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, void (*cb)(qemu_plugin_id_t, struct qemu_plugin_tb *));
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
const char *qemu_plugin_insn_symbol(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, void (*cb)(unsigned int, void *), enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, void (*cb)(qemu_plugin_id_t, void *), void *userdata);
void qemu_plugin_outs(const char *string);
__attribute__((visibility("default"))) int qemu_plugin_version = 1;
#define NSYM 8192
struct sym { const char *name; _Atomic uint64_t insns; };
static struct sym syms[NSYM];
static int nsyms;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
struct tbinfo { struct sym *s; uint64_t n; };
static void exec(unsigned int vcpu, void *p) { (void)vcpu; struct tbinfo *t = p; atomic_fetch_add_explicit(&t->s->insns, t->n, memory_order_relaxed); }
static struct sym *find(const char *name) {
  if (!name) name = "?";
  pthread_mutex_lock(&lock);
  for (int i = 0; i < nsyms; i++) if (strcmp(syms[i].name, name) == 0) { pthread_mutex_unlock(&lock); return &syms[i]; }
  struct sym *s = &syms[nsyms < NSYM - 1 ? nsyms++ : NSYM - 1];
  if (!s->name) s->name = strdup(name);
  pthread_mutex_unlock(&lock);
  return s;
}
static void trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
  (void)id;
  struct tbinfo *t = malloc(sizeof *t);
  t->n = qemu_plugin_tb_n_insns(tb);
  t->s = find(qemu_plugin_insn_symbol(qemu_plugin_tb_get_insn(tb, 0)));
  qemu_plugin_register_vcpu_tb_exec_cb(tb, exec, QEMU_PLUGIN_CB_NO_REGS, t);
}
static int cmp(const void *a, const void *b) {
  uint64_t x = ((const struct sym *)a)->insns, y = ((const struct sym *)b)->insns;
  return x < y ? 1 : x > y ? -1 : 0;
}
static void done(qemu_plugin_id_t id, void *p) {
  (void)id; (void)p;
  uint64_t total = 0;
  for (int i = 0; i < nsyms; i++) total += syms[i].insns;
  qsort(syms, nsyms, sizeof syms[0], cmp);
  char s[512];
  snprintf(s, sizeof s, "insns: %llu\n", (unsigned long long)total); qemu_plugin_outs(s);
  for (int i = 0; i < nsyms && i < 40; i++) {
    snprintf(s, sizeof s, "%14llu %s\n", (unsigned long long)syms[i].insns, syms[i].name);
    qemu_plugin_outs(s);
  }
}
__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
  (void)info; (void)argc; (void)argv;
  qemu_plugin_register_vcpu_tb_trans_cb(id, trans);
  qemu_plugin_register_atexit_cb(id, done, NULL);
  return 0;
}
