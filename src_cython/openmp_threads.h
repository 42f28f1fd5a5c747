/*
 * What the kernels ask of the OpenMP runtime, compiled with or without it
 * (Apple's clang has no OpenMP: the kernels then run on one thread).
 */
#ifndef FASTCALC_OPENMP_THREADS_H
#define FASTCALC_OPENMP_THREADS_H

#ifdef _OPENMP
#include <omp.h>
#define FASTCALC_OPENMP 1
/* The calling thread's limit on an OpenMP team (its nthreads ICV): what
   omp_set_num_threads, and so threadpoolctl, sets. */
static int fastcalc_openmp_max_threads(void) { return omp_get_max_threads(); }
#else
#define FASTCALC_OPENMP 0
static int fastcalc_openmp_max_threads(void) { return 1; }
#endif

#if defined(_OPENMP) && defined(__linux__)
#include <sched.h>  /* Python.h defined _GNU_SOURCE: sched_getcpu, CPU_SET */

/* The CPU the calling thread runs on (-1: unknown). */
static int fastcalc_current_cpu(void) { return sched_getcpu(); }

/*
 * Called by every thread of a team as a parallel region starts, with the CPU
 * the caller ran on as it started the region: a worker woken on that same CPU
 * moves to another CPU it may use.
 *
 * Idle workers sleep after a short poll (fastcalc._dispatch.short_openmp_waits).
 * Linux wakes a sleeping thread on the CPU it last ran on, or on the waker's,
 * and on some kernels (this 2-core VM's) does not look further for an idle
 * one: once the caller has moved onto a worker's CPU (after any sleep or
 * blocking call of its own), the worker is woken there at every call and the
 * two share one CPU while another idles, until the load balancer separates
 * them, which a short call rarely lasts long enough for (sigmoid on 2**20
 * float32 after a 0.2 s pause: 0.42-0.56 ms instead of 0.19).
 *
 * So a worker that finds itself on the caller's CPU narrows its affinity to
 * the other CPUs, which makes the kernel move it at once, and sets the mask
 * back as it was.  It can only do so once it runs: where a worker of the
 * previous region was woken on the caller's CPU, the caller yields its CPU
 * once, so that a worker queued behind it runs and moves.  Only then: on a
 * busy machine a yield can hand the rest of a time slice to another process
 * (yielding at every region left the contended sigmoid 2**20's median at
 * 0.19 ms but took its mean to 1.3-1.6 ms, against Numba's 0.4).  A partial
 * cure: after 0.2 s pauses the medians of 20 such calls measured 0.18-0.44 ms
 * (0.28 typical), against 0.20-0.51 without it and 0.19 (0.19-0.39) with GNU
 * OpenMP's default polling, whose workers rarely sleep.
 */

/* Whether each thread number of fastcalc's teams was woken on the caller's CPU
   in its last region (shared by concurrent teams: a guess, which only decides
   a yield). */
#define FASTCALC_TRACKED_THREADS 256
static int fastcalc_woken_on_caller[FASTCALC_TRACKED_THREADS];

static void fastcalc_leave_cpu(int caller_cpu)
{
    cpu_set_t allowed, others;
    int thread = omp_get_thread_num(), threads = omp_get_num_threads(), i, shared;
    if (caller_cpu < 0)
        return;
    if (thread == 0) {
        for (i = 1; i < threads && i < FASTCALC_TRACKED_THREADS; i++)
            if (__atomic_load_n(&fastcalc_woken_on_caller[i], __ATOMIC_RELAXED)) {
                sched_yield();
                break;
            }
        return;
    }
    shared = sched_getcpu() == caller_cpu;
    if (thread < FASTCALC_TRACKED_THREADS)
        __atomic_store_n(&fastcalc_woken_on_caller[thread], shared, __ATOMIC_RELAXED);
    if (shared && sched_getaffinity(0, sizeof allowed, &allowed) == 0) {
        others = allowed;
        CPU_CLR(caller_cpu, &others);
        if (CPU_COUNT(&others) > 0 && sched_setaffinity(0, sizeof others, &others) == 0)
            sched_setaffinity(0, sizeof allowed, &allowed);
    }
}
#else
static int fastcalc_current_cpu(void) { return -1; }
static void fastcalc_leave_cpu(int caller_cpu) { (void)caller_cpu; }
#endif

#endif
