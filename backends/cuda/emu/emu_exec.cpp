/* The execution model of the emulator: a grid's blocks run one after another on the launching OS thread,
 * and a block's threads are fibers (ucontext) switched cooperatively at barriers and warp collectives.
 *
 * Scheduling: a queue of runnable fibers; a fiber runs until it blocks or returns, then hands over to the
 * next in the queue directly (the scheduler's own context only sees the block's start, its barriers and
 * its end). Fibers made runnable together (the block at its start and at a barrier, a warp's lanes when
 * their collective completes) join the queue in the order the schedule picks
 * (SLM_CUDA_EMU_SCHEDULE=inorder|reverse|random, SLM_CUDA_EMU_SEED for random). A kernel that needs a
 * barrier it lacks gives different results under different schedules (in order, thread 0 runs until it
 * blocks before thread 1 starts).
 *
 * Barriers are released by the scheduler once no fiber can run: all threads of the block must then be
 * waiting at the same __syncthreads. Warp collectives complete as soon as the last lane of their mask
 * arrives. Anything else that leaves no fiber runnable (threads exited before a barrier, lanes at different
 * barriers or collectives, a mask naming exited lanes) is a divergence: the launch fails with a message
 * that names the kernel, the block and what each waiting thread waits for. It never hangs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <string>
#include <vector>

#include "emu_internal.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define SLM_EMU_ASAN 1
#else
#define SLM_EMU_ASAN 0
#endif

/* glibc's swapcontext makes a system call per switch (the signal mask), and under ASan its interceptor
 * clears the shadow of the whole target stack; the emulator switches at every shuffle. On x86-64 a small
 * switch that saves only the callee-saved registers is many times faster (ASan is told about each switch
 * by its fiber annotations). The FP control words (MXCSR, x87) are not switched: nothing in a kernel or
 * the emulator changes them, so every fiber runs with the launching thread's (and saving them cost more
 * than the rest of the switch). ucontext stays for other machines. */
#if defined(__x86_64__)
#define SLM_EMU_FAST_SWITCH 1
/* Saves the callee-saved state on the current stack and its pointer in *save, then resumes the stack at to. */
extern "C" void slm_emu_switch(void **save, void *to);
__asm__(".text\n"
        ".globl slm_emu_switch\n"
        ".hidden slm_emu_switch\n"
        ".type slm_emu_switch,@function\n"
        "slm_emu_switch:\n"
        "  pushq %rbp\n"
        "  pushq %rbx\n"
        "  pushq %r12\n"
        "  pushq %r13\n"
        "  pushq %r14\n"
        "  pushq %r15\n"
        "  movq %rsp, (%rdi)\n"
        "  movq %rsi, %rsp\n"
        "  popq %r15\n"
        "  popq %r14\n"
        "  popq %r13\n"
        "  popq %r12\n"
        "  popq %rbx\n"
        "  popq %rbp\n"
        "  ret\n"
        ".size slm_emu_switch, .-slm_emu_switch\n");
#else
#define SLM_EMU_FAST_SWITCH 0
#endif

namespace slm_emu {

thread_local exec_state g_exec;

enum fiber_state { F_READY, F_BARRIER, F_WARP, F_DONE };

struct fiber {
    ucontext_t ctx;
    void *sp = nullptr;    /* saved stack pointer (fast switch) */
    void *stack = nullptr; /* usable stack (above the guard page) */
    size_t stack_size = 0;
    void *asan_fake = nullptr;
    uint3 tid;
    int linear = 0;
    fiber_state state = F_READY;
    int line = 0; /* barrier or collective call site */
    coll_kind kind = COLL_SYNC;
    unsigned mask = 0;
    uint64_t value = 0, result = 0;
    int arg = 0, width = 32;
};

struct warp_pending {
    unsigned arrived = 0, mask = 0;
    coll_kind kind = COLL_SYNC;
    int line = 0;
};

enum schedule_kind { SCHED_INORDER, SCHED_REVERSE, SCHED_RANDOM };

/* Per OS thread: the fiber pool (stacks allocated once, reused by every block) and the running block. */
struct runner {
    std::vector<fiber *> pool;
    ucontext_t sched_ctx;
    void *sched_sp = nullptr;
    const void *sched_stack_bottom = nullptr;
    size_t sched_stack_size = 0;
    const std::function<void()> *body = nullptr;
    const launch_info *info = nullptr;
    int n_threads = 0, n_done = 0;
    std::vector<warp_pending> warps;
    std::vector<unsigned char> dyn_shared;
    bool failed = false;
    std::string msg;
    schedule_kind schedule = SCHED_INORDER;
    uint64_t rng = 1;
    /* runnable fibers in the order they will be resumed (each at most once) */
    std::vector<int> queue;
    size_t queue_head = 0;
    ~runner(); /* the thread's fibers and stacks go with it */
};
static thread_local runner *g_runner;

static const char *const k_coll_names[] = {"__shfl_sync",   "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync",
                                           "__ballot_sync", "__any_sync",     "__all_sync",       "__syncwarp"};

static size_t stack_bytes() {
    /* Kernels keep small frames, but the sanitizers' instrumentation multiplies them. */
    static const size_t s = env_bytes("SLM_CUDA_EMU_STACK", SLM_EMU_ASAN ? (size_t)512 << 10 : (size_t)64 << 10);
    return (s + 4095) & ~(size_t)4095;
}

static fiber *new_fiber() {
    fiber *f = new fiber();
    size_t sz = stack_bytes(), guard = 4096;
    void *m = mmap(nullptr, sz + guard, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        fprintf(stderr, "slm cuda emulator: cannot map a %zu-byte fiber stack\n", sz);
        abort();
    }
    /* a stack overflow faults on the guard page instead of corrupting the neighbouring fiber's stack */
    mprotect(m, guard, PROT_NONE);
    f->stack = (char *)m + guard;
    f->stack_size = sz;
    return f;
}

runner::~runner() {
    for (fiber *f : pool) {
        munmap((char *)f->stack - 4096, f->stack_size + 4096);
        delete f;
    }
}

static schedule_kind env_schedule() {
    const char *s = getenv("SLM_CUDA_EMU_SCHEDULE");
    if (!s || !*s || !strcmp(s, "inorder")) return SCHED_INORDER;
    if (!strcmp(s, "reverse")) return SCHED_REVERSE;
    if (!strcmp(s, "random")) return SCHED_RANDOM;
    fprintf(stderr, "slm cuda emulator: SLM_CUDA_EMU_SCHEDULE=%s is not inorder, reverse or random\n", s);
    abort();
}

static uint64_t next_rand(uint64_t *s) { /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

/* ---- switching ------------------------------------------------------------------------------------------ */

/* Makes ids (fibers now runnable) resumable, in the order the schedule picks. */
static void push_ready(runner *r, int *ids, int n) {
    if (r->schedule == SCHED_REVERSE) {
        for (int i = 0, j = n - 1; i < j; i++, j--) std::swap(ids[i], ids[j]);
    } else if (r->schedule == SCHED_RANDOM) {
        for (int i = n - 1; i > 0; i--) std::swap(ids[i], ids[next_rand(&r->rng) % (uint64_t)(i + 1)]);
    }
    for (int i = 0; i < n; i++) r->queue.push_back(ids[i]);
}

static fiber *pop_ready(runner *r) {
    while (r->queue_head < r->queue.size()) {
        fiber *f = r->pool[r->queue[r->queue_head++]];
        if (f->state == F_READY) return f;
    }
    r->queue.clear();
    r->queue_head = 0;
    return nullptr;
}

/* The switch itself: saves the running context (a fiber's, or the scheduler's when from is null) and
 * resumes to (a fiber, or the scheduler when null). ASan is told which stack comes next. */
static void switch_to(runner *r, fiber *from, fiber *to) {
    if (to) {
        g_exec.cur = to;
        g_exec.cur_tid = to->tid;
    }
#if SLM_EMU_ASAN
    void *fake = nullptr;
    void **save = from ? (from->state == F_DONE ? nullptr : &from->asan_fake) : &fake;
    if (to) __sanitizer_start_switch_fiber(save, to->stack, to->stack_size);
    else __sanitizer_start_switch_fiber(save, r->sched_stack_bottom, r->sched_stack_size);
#endif
#if SLM_EMU_FAST_SWITCH
    slm_emu_switch(from ? &from->sp : &r->sched_sp, to ? to->sp : r->sched_sp);
#else
    swapcontext(from ? &from->ctx : &r->sched_ctx, to ? &to->ctx : &r->sched_ctx);
#endif
#if SLM_EMU_ASAN
    __sanitizer_finish_switch_fiber(from ? from->asan_fake : fake, nullptr, nullptr);
#endif
}

/* From the scheduler into the queue's fibers; returns once no fiber is runnable (or the block failed). */
static void to_fiber(runner *r, fiber *f) {
    switch_to(r, nullptr, f);
    g_exec.cur = nullptr;
}

static void arrived_in_fiber(runner *r, fiber *f) {
#if SLM_EMU_ASAN
    __sanitizer_finish_switch_fiber(f->asan_fake, nullptr, nullptr);
#endif
    (void)r;
    (void)f;
}

/* A fiber that blocked (or finished) hands over to the next runnable fiber directly, or to the scheduler
 * when there is none (or the block failed); returns when the fiber is resumed. */
static void yield_fiber(runner *r, fiber *f) {
    fiber *next = r->failed ? nullptr : pop_ready(r);
    if (next == f) return; /* released already (the last lane of a collective) and first in the queue */
    switch_to(r, f, next);
}

static void fiber_entry() {
    runner *r = g_runner;
    fiber *f = g_exec.cur;
    arrived_in_fiber(r, f);
    (*r->body)();
    f->state = F_DONE;
    r->n_done++;
    yield_fiber(r, f); /* never resumed */
    abort();
}

/* ---- failures -------------------------------------------------------------------------------------------- */

static std::string where(const runner *r) {
    char b[512];
    snprintf(b, sizeof b, "kernel %s (launched at %s:%d) block (%u,%u,%u) of grid (%u,%u,%u), %d threads",
             r->info->name, r->info->file, r->info->line, g_exec.block_idx.x, g_exec.block_idx.y, g_exec.block_idx.z,
             g_exec.grid_dim.x, g_exec.grid_dim.y, g_exec.grid_dim.z, r->n_threads);
    return b;
}

/* Fails the launch from inside a fiber: the scheduler abandons the block. */
static void fail_in_fiber(runner *r, fiber *f, const std::string &what) {
    if (!r->failed) {
        r->failed = true;
        char b[128];
        snprintf(b, sizeof b, " thread (%u,%u,%u): ", f->tid.x, f->tid.y, f->tid.z);
        r->msg = where(r) + b + what;
    }
    f->state = F_DONE; /* never resumed */
    yield_fiber(r, f);
    abort();
}

/* Every live fiber is blocked: describe who waits for what. */
static std::string describe_stall(runner *r) {
    std::string s = where(r) + ": divergence, no thread can go on:";
    char b[256];
    if (r->n_done) {
        snprintf(b, sizeof b, " %d thread(s) have exited;", r->n_done);
        s += b;
    }
    /* group the waiting threads by what they wait at */
    std::vector<bool> told(r->n_threads, false);
    for (int i = 0; i < r->n_threads; i++) {
        fiber *f = r->pool[i];
        if (told[i] || f->state == F_DONE) continue;
        int count = 0, first = i;
        for (int j = i; j < r->n_threads; j++) {
            fiber *g = r->pool[j];
            if (!told[j] && g->state == f->state && g->line == f->line &&
                (f->state != F_WARP || (g->linear / 32 == f->linear / 32 && g->kind == f->kind))) {
                told[j] = true;
                count++;
            }
        }
        if (f->state == F_BARRIER)
            snprintf(b, sizeof b, " %d thread(s) from linear index %d wait at __syncthreads (line %d);", count, first,
                     f->line);
        else {
            const warp_pending &w = r->warps[f->linear / 32];
            snprintf(b, sizeof b, " warp %d: %d lane(s) wait at %s (line %d) for mask 0x%08x, arrived 0x%08x;",
                     f->linear / 32, count, k_coll_names[f->kind], f->line, w.mask, w.arrived);
        }
        s += b;
    }
    return s;
}

/* ---- device-side entry points ---------------------------------------------------------------------------------- */

static runner *current_runner(const char *what) {
    runner *r = g_runner;
    if (!r || !g_exec.cur) {
        fprintf(stderr, "slm cuda emulator: %s called outside a kernel\n", what);
        abort();
    }
    return r;
}

void syncthreads(int line) {
    runner *r = current_runner("__syncthreads");
    fiber *f = g_exec.cur;
    f->state = F_BARRIER;
    f->line = line;
    yield_fiber(r, f);
}

static uint64_t lane_result(runner *r, int warp_base, const fiber *f, unsigned mask, bool *bad_src, int *src_out) {
    const int lane = f->linear - warp_base, w = f->width;
    const int base = lane & ~(w - 1);
    int src = lane;
    switch (f->kind) {
    case COLL_SHFL: src = base + (f->arg & (w - 1)); break;
    case COLL_SHFL_UP: src = (lane - base) < f->arg ? lane : lane - f->arg; break;
    case COLL_SHFL_DOWN: src = (lane - base) + f->arg >= w ? lane : lane + f->arg; break;
    case COLL_SHFL_XOR:
        src = lane ^ f->arg;
        if (src < base || src >= base + w) src = lane;
        break;
    default: {
        unsigned votes = 0;
        for (int l = 0; l < 32; l++)
            if ((mask >> l) & 1u) votes |= (r->pool[warp_base + l]->value ? 1u : 0u) << l;
        if (f->kind == COLL_BALLOT) return votes;
        if (f->kind == COLL_ANY) return votes != 0;
        if (f->kind == COLL_ALL) return votes == mask;
        return 0;
    }
    }
    *src_out = src;
    if (!((mask >> src) & 1u)) {
        *bad_src = true;
        return 0;
    }
    return r->pool[warp_base + src]->value;
}

uint64_t warp_collective(coll_kind kind, unsigned mask, uint64_t value, int arg, int width, int line) {
    runner *r = current_runner(k_coll_names[kind]);
    fiber *f = g_exec.cur;
    const int warp = f->linear / 32, lane = f->linear % 32, warp_base = warp * 32;
    char b[256];
    if (!((mask >> lane) & 1u)) {
        snprintf(b, sizeof b, "%s (line %d): mask 0x%08x does not include the calling lane %d", k_coll_names[kind],
                 line, mask, lane);
        fail_in_fiber(r, f, b);
    }
    if (width < 1 || width > 32 || (width & (width - 1))) {
        snprintf(b, sizeof b, "%s (line %d): width %d is not a power of two up to 32", k_coll_names[kind], line, width);
        fail_in_fiber(r, f, b);
    }
    const int lanes_here = r->n_threads - warp_base < 32 ? r->n_threads - warp_base : 32;
    if (lanes_here < 32 && (mask >> lanes_here)) {
        snprintf(b, sizeof b, "%s (line %d): mask 0x%08x names lanes a warp of %d threads does not have",
                 k_coll_names[kind], line, mask, lanes_here);
        fail_in_fiber(r, f, b);
    }
    warp_pending &w = r->warps[warp];
    if (w.arrived && (w.mask != mask || w.kind != kind)) {
        snprintf(b, sizeof b,
                 "%s (line %d, mask 0x%08x) while lanes 0x%08x of the warp wait at %s (line %d, mask 0x%08x)",
                 k_coll_names[kind], line, mask, w.arrived, k_coll_names[w.kind], w.line, w.mask);
        fail_in_fiber(r, f, b);
    }
    if (!w.arrived) {
        w.mask = mask;
        w.kind = kind;
        w.line = line;
    }
    f->state = F_WARP;
    f->kind = kind;
    f->line = line;
    f->mask = mask;
    f->value = value;
    f->arg = arg;
    f->width = width;
    w.arrived |= 1u << lane;
    if (w.arrived == mask) {
        /* the last lane: every lane's result from the values as they were at arrival */
        for (int l = 0; l < 32; l++) {
            if (!((mask >> l) & 1u)) continue;
            fiber *g = r->pool[warp_base + l];
            bool bad = false;
            int src = l;
            g->result = lane_result(r, warp_base, g, mask, &bad, &src);
            if (bad) {
                snprintf(b, sizeof b, "%s (line %d): lane %d reads lane %d, which is not in the mask 0x%08x",
                         k_coll_names[kind], line, l, src, mask);
                fail_in_fiber(r, f, b);
            }
        }
        int ids[32], n_ids = 0;
        for (int l = 0; l < 32; l++)
            if ((mask >> l) & 1u) {
                r->pool[warp_base + l]->state = F_READY;
                ids[n_ids++] = warp_base + l;
            }
        push_ready(r, ids, n_ids);
        w.arrived = 0;
        memstats_flush_warp(warp, r->n_threads);
    }
    yield_fiber(r, f); /* even when complete: lets the schedule interleave the lanes */
    return f->result;
}

/* ---- blocks ------------------------------------------------------------------------------------------------------ */

#if !SLM_EMU_FAST_SWITCH
/* Out of line: getcontext returns twice, which would make the caller's loop variables suspect. */
static __attribute__((noinline)) void init_ucontext(fiber *f) {
    getcontext(&f->ctx);
    f->ctx.uc_stack.ss_sp = f->stack;
    f->ctx.uc_stack.ss_size = f->stack_size;
    f->ctx.uc_link = nullptr;
    makecontext(&f->ctx, fiber_entry, 0);
}
#endif

static bool run_block(runner *r) {
    const int n = r->n_threads;
    const dim3 bd = g_exec.block_dim;
    for (int i = 0; i < n; i++) {
        fiber *f = r->pool[i];
        f->linear = i;
        f->tid = uint3{(unsigned)i % bd.x, ((unsigned)i / bd.x) % bd.y, (unsigned)i / (bd.x * bd.y)};
        f->state = F_READY;
        f->line = 0;
        f->asan_fake = nullptr;
#if SLM_EMU_ASAN
        /* The stack is reused: frames of its last fiber that never returned (the switch out of a finished or
         * abandoned fiber) left their redzones poisoned, where the new fiber's frames will lie. */
        __asan_unpoison_memory_region(f->stack, f->stack_size);
#endif
#if SLM_EMU_FAST_SWITCH
        /* A fresh stack as slm_emu_switch leaves one: six registers, then fiber_entry as the return address,
         * entered with the stack aligned as after a call. The tops of the stacks are staggered by cache
         * lines: stacks a multiple of 4 KiB apart would otherwise contend for the same cache sets. */
        uintptr_t top_addr = (uintptr_t)((char *)f->stack + f->stack_size) - (uintptr_t)(i % 61) * 64;
        uint64_t *top = (uint64_t *)(top_addr & ~(uintptr_t)15);
        uint64_t *sp = top - 8;
        memset(sp, 0, 8 * sizeof *sp);
        sp[6] = (uint64_t)(uintptr_t)fiber_entry;
        f->sp = sp;
#else
        init_ucontext(f);
#endif
    }
    r->n_done = 0;
    for (auto &w : r->warps) w = warp_pending();
    if (!r->dyn_shared.empty()) memset(r->dyn_shared.data(), 0xff, r->dyn_shared.size()); /* garbage, as on a GPU */
    std::vector<int> all(n);
    r->queue.clear();
    r->queue_head = 0;
    for (int i = 0; i < n; i++) all[i] = i;
    push_ready(r, all.data(), n);
    for (;;) {
        fiber *f = pop_ready(r);
        if (!f) {
            memstats_flush_block(n);
            if (r->n_done == n) return true;
            /* every live thread blocked: a barrier all threads reached at one call site is released */
            bool release = r->n_done == 0;
            for (int i = 0; i < n && release; i++)
                release = r->pool[i]->state == F_BARRIER && r->pool[i]->line == r->pool[0]->line;
            if (!release) {
                r->failed = true;
                r->msg = describe_stall(r);
                return false;
            }
            for (int i = 0; i < n; i++) {
                r->pool[i]->state = F_READY;
                all[i] = i;
            }
            push_ready(r, all.data(), n);
            continue;
        }
        to_fiber(r, f);
        if (r->failed) return false;
    }
}

bool run_kernel(const launch_info &info, const std::function<void()> &body, std::string *msg) {
    static thread_local runner tr;
#if SLM_EMU_ASAN
    if (!tr.sched_stack_bottom) { /* where this thread's own stack lies, for ASan's switch annotations */
        pthread_attr_t a;
        pthread_getattr_np(pthread_self(), &a);
        void *addr;
        size_t size;
        pthread_attr_getstack(&a, &addr, &size);
        pthread_attr_destroy(&a);
        tr.sched_stack_bottom = addr;
        tr.sched_stack_size = size;
    }
#endif
    static thread_local uint64_t launches;
    runner *r = &tr;
    const int n = (int)(info.block.x * info.block.y * info.block.z);
    while ((int)r->pool.size() < n) r->pool.push_back(new_fiber());
    r->warps.assign((size_t)(n + 31) / 32, warp_pending());
    r->dyn_shared.assign(info.shmem, 0);
    r->body = &body;
    r->info = &info;
    r->n_threads = n;
    r->failed = false;
    r->msg.clear();
    r->schedule = env_schedule();
    r->rng = (uint64_t)env_long("SLM_CUDA_EMU_SEED", 1) * 0x9e3779b97f4a7c15ull + ++launches;
    if (!r->rng) r->rng = 1;
    memstats_begin_kernel(info, n);
    runner *saved = g_runner;
    g_runner = r;
    g_exec.grid_dim = info.grid;
    g_exec.block_dim = info.block;
    g_exec.dyn_shared = r->dyn_shared.empty() ? nullptr : r->dyn_shared.data();
    bool ok = true;
    for (unsigned z = 0; z < info.grid.z && ok; z++)
        for (unsigned y = 0; y < info.grid.y && ok; y++)
            for (unsigned x = 0; x < info.grid.x && ok; x++) {
                g_exec.block_idx = uint3{x, y, z};
                ok = run_block(r);
            }
    g_runner = saved;
    if (!ok) *msg = r->msg;
    return ok;
}

} // namespace slm_emu
