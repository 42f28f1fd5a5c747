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

#endif
