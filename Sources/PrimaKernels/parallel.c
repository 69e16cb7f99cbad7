// A small thread pool for the runtime's parallel loops (int8 GEMM pieces, attention heads).
//
// Why not GCD's concurrentPerform: its worker threads park as soon as a loop ends, so every loop starts with a
// futex wake and the wake-up latency of a sleeping thread (about 10 µs, a sixth of a ViT-S int8 projection on two
// cores). Here the workers spin for PRIMA_POOL_SPIN_NS after a loop, so the next loop of a forward pass finds them
// awake, and then sleep on a condition variable. One loop runs at a time; a caller that finds the pool busy (another
// thread's loop, or a loop inside a loop) runs its own loop alone, which gives the same results.
#define _GNU_SOURCE
#include "PrimaKernels.h"
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define PRIMA_POOL_SPIN_NS 200000   // how long an idle worker polls for the next loop before it sleeps
#define PRIMA_POOL_MAX_WORKERS 63

struct job {
    prima_task_fn fn;
    void *context;
    int64_t count;
    _Atomic int64_t next;       // the next index to take
    _Atomic int64_t finished;   // indices done
};

static struct {
    pthread_once_t once;
    int workers;
    _Atomic(struct job *) job;  // the running loop, or NULL
    _Atomic int active;         // workers that may be reading `job` (see run_or_wait)
    pthread_mutex_t submit;     // held by the caller whose loop is running
    pthread_mutex_t lock;       // guards sleepers and the condition variable
    pthread_cond_t wake;
    int sleepers;
} pool = {.once = PTHREAD_ONCE_INIT, .submit = PTHREAD_MUTEX_INITIALIZER, .lock = PTHREAD_MUTEX_INITIALIZER,
          .wake = PTHREAD_COND_INITIALIZER};

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void take_indices(struct job *job) {
    int64_t i;
    while ((i = atomic_fetch_add(&job->next, 1)) < job->count) {
        job->fn(job->context, i);
        atomic_fetch_add(&job->finished, 1);
    }
}

/// One look for work. `active` is raised before `job` is read, and the caller lowers `job` to NULL before it waits
/// for `active` to drop to 0 (both sequentially consistent), so a worker never touches a job after its caller
/// returned. Returns 1 if there was a job.
static int run_job_if_any(void) {
    if (atomic_load_explicit(&pool.job, memory_order_relaxed) == NULL) return 0;   // the common idle case, read-only
    atomic_fetch_add(&pool.active, 1);
    struct job *job = atomic_load(&pool.job);
    if (job) take_indices(job);
    atomic_fetch_sub(&pool.active, 1);
    return job != NULL;
}

static void *worker_main(void *unused) {
    (void)unused;
    for (;;) {
        const int64_t idle_since = now_ns();
        int spins = 0;
        while (!run_job_if_any()) {
            CPU_RELAX();
            if (++spins % 64 == 0 && now_ns() - idle_since > PRIMA_POOL_SPIN_NS) {
                pthread_mutex_lock(&pool.lock);
                pool.sleepers++;
                while (atomic_load(&pool.job) == NULL) pthread_cond_wait(&pool.wake, &pool.lock);
                pool.sleepers--;
                pthread_mutex_unlock(&pool.lock);
            }
        }
    }
    return NULL;
}

/// The thread count asked for before the pool starts (prima_pool_request_threads); 0: one per online CPU.
static _Atomic int requested_threads = 0;
static _Atomic int started = 0;

int prima_pool_request_threads(int threads) {
    if (threads < 1 || atomic_load(&started)) return -1;
    atomic_store(&requested_threads, threads);
    return 0;
}

static void start_workers(void) {
    atomic_store(&started, 1);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int requested = atomic_load(&requested_threads);
    if (requested > 0) cpus = requested;
    int wanted = cpus > 1 ? (int)(cpus - 1) : 0;
    if (wanted > PRIMA_POOL_MAX_WORKERS) wanted = PRIMA_POOL_MAX_WORKERS;
    for (int w = 0; w < wanted; w++) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, worker_main, NULL) != 0) break;
        pthread_detach(thread);
        pool.workers++;
    }
}

int prima_pool_workers(void) {
    pthread_once(&pool.once, start_workers);
    return pool.workers;
}

void prima_parallel_for(int64_t count, prima_task_fn fn, void *context) {
    if (count <= 0) return;
    if (count == 1 || prima_pool_workers() == 0 || pthread_mutex_trylock(&pool.submit) != 0) {
        for (int64_t i = 0; i < count; i++) fn(context, i);
        return;
    }
    struct job job = {.fn = fn, .context = context, .count = count};
    atomic_store(&pool.job, &job);
    pthread_mutex_lock(&pool.lock);
    if (pool.sleepers > 0) pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    take_indices(&job);
    while (atomic_load(&job.finished) < count) CPU_RELAX();
    atomic_store(&pool.job, NULL);
    while (atomic_load(&pool.active) > 0) CPU_RELAX();
    pthread_mutex_unlock(&pool.submit);
}
