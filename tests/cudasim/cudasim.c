/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libcudasim: a strict stand-in for the part of the CUDA runtime API that
 * cuda/, the GPU tests and the bench call, compiled against the real
 * toolkit headers so every signature is checked.  Test-only: never
 * installed, never linked into anything that ships (tests/install checks
 * nm -D of every installed library for the cudasim_ prefix).
 *
 * What it is strict about, because real GPUs punish it:
 *   - Device memory (cudaMalloc) is a memfd mapped twice: the address handed
 *     out is PROT_NONE, so a host dereference crashes the test; the
 *     stand-in copies through the second, writable mapping.  A copy that
 *     runs past an allocation's end is cudaErrorInvalidValue.
 *   - Managed memory (cudaMallocManaged) is host-accessible and reported as
 *     managed; pinned memory (cudaHostAlloc, cudaMallocHost,
 *     cudaHostRegister) is host memory reported as cudaMemoryTypeHost;
 *     anything else is cudaMemoryTypeUnregistered, without an error (as
 *     CUDA 11 and later report it).
 *   - Every stream is a thread that runs its queue in order after a random
 *     delay per operation (seeded; the seed is printed once, CUDASIM_SEED
 *     repeats it), so a missing wait reads or writes the wrong bytes.
 *     Events record a stream position; cudaStreamWaitEvent queues a wait
 *     for the position recorded when it is called.  The legacy default
 *     stream (0, cudaStreamLegacy) waits for the blocking streams' earlier
 *     work and they wait for its; cudaStreamNonBlocking streams do not.
 *   - Copies follow the documented host synchronicity: from pageable memory
 *     to the device, the stream's earlier work runs and the source is read
 *     before the call returns; to pageable memory, and host to host, the
 *     call returns once the copy is done; the rest is asynchronous.
 *   - cudaFree, cudaFreeHost and cudaHostUnregister wait for every
 *     stream's queued work first, as the real ones synchronize.
 *   - Destroyed or unknown streams and events are
 *     cudaErrorInvalidResourceHandle.
 *   - CUDASIM_ERROR=no_device or insufficient_driver makes every call fail
 *     as a machine without a GPU or with an old driver does.
 *   - cudasim_fail_copy_at(n): the n-th copy executed from then on faults
 *     asynchronously (cudaErrorIllegalAddress) and leaves the error sticky:
 *     every later call returns it, as after a real fault, until
 *     cudasim_reset() (which stands for starting a new process).
 *   - CUDA does not survive fork: in a child of a process that had called
 *     it, every call fails with cudaErrorInitializationError, as the real
 *     runtime's do (the child has none of the parent's stream threads, so
 *     working on would hang).  A child of a process that never called it
 *     starts its own.
 *
 * Kernel launches are out of scope.  One global lock and one condition
 * variable serve every stream: simple, and fast enough for tests.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#include "cudasim.h"
#include "cudasim_internal.h"

#define API __attribute__((visibility("default")))

enum { OP_COPY, OP_SET, OP_WAIT, OP_FN };

typedef struct op {
    int kind;
    void *dst;       /* resolved: a shadow address for device memory */
    const void *src; /* resolved */
    size_t n;
    int val;
    void *owned; /* a snapshot of a pageable source, freed after the copy */
    struct sstream *wait_s;
    uint64_t wait_seq;
    void (*fn)(void *arg, int run); /* OP_FN: work of the NCCL stand-in */
    void *arg;
    struct op *next;
} op;

typedef struct sstream {
    unsigned flags;
    int live, legacy, stop;
    op *head, *tail;
    uint64_t submitted, completed;
    uint64_t rng;
    pthread_t thread;
    struct sstream *next_all;
} sstream;

typedef struct sevent {
    int live;
    sstream *s; /* NULL: never recorded (complete) */
    uint64_t seq;
    struct sevent *next_all;
} sevent;

enum { MEM_DEVICE, MEM_MANAGED, MEM_HOSTALLOC, MEM_REGISTERED };

typedef struct region {
    char *base;   /* what the caller sees */
    char *shadow; /* device memory: the writable mapping */
    size_t n, mapped;
    int kind, dev;
    struct region *next;
} region;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int init;
    uint64_t seed;
    unsigned max_delay_us;
    sstream *streams; /* every stream ever made; freed at unload */
    sevent *events;
    sstream *legacy;
    region *regions;
    cudaError_t sticky;
    uint64_t fail_at; /* copies left before the faulting one; 0: none */
    uint64_t copies;  /* copies executed */
    unsigned nstreams;
    int forked; /* a child forked after init: nothing works, nothing waits */
} G = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static __thread int cur_dev;
static __thread cudaError_t last_err;

static int ndevices(void)
{
    const char *e = getenv("CUDASIM_DEVICES");
    int n = e ? atoi(e) : 8;
    return n > 0 ? n : 8;
}

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* G.mu held. */
static void init_locked(void)
{
    if (G.init)
        return;
    G.init = 1;
    const char *s = getenv("CUDASIM_SEED");
    if (s && *s) {
        G.seed = strtoull(s, NULL, 0);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        G.seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
    }
    const char *d = getenv("CUDASIM_MAX_DELAY_US");
    G.max_delay_us = d ? (unsigned)atoi(d) : 200;
    fprintf(stderr, "cudasim: seed %llu (CUDASIM_SEED=%llu repeats it)\n",
            (unsigned long long)G.seed, (unsigned long long)G.seed);
}

static cudaError_t ret(cudaError_t e)
{
    if (e != cudaSuccess)
        last_err = e;
    return e;
}

/* The error every call returns before doing anything: the environment's
 * mode, else a sticky fault.  G.mu held. */
static cudaError_t gate_locked(void)
{
    if (G.forked)
        return cudaErrorInitializationError;
    init_locked();
    const char *m = getenv("CUDASIM_ERROR");
    if (m && !strcmp(m, "no_device"))
        return cudaErrorNoDevice;
    if (m && !strcmp(m, "insufficient_driver"))
        return cudaErrorInsufficientDriver;
    return G.sticky;
}

static cudaError_t gate(void)
{
    pthread_mutex_lock(&G.mu);
    cudaError_t e = gate_locked();
    pthread_mutex_unlock(&G.mu);
    return e;
}

/* ---- memory --------------------------------------------------------------- */

static void drain_locked(void);

static region *find_locked(const void *p)
{
    const char *c = p;
    for (region *r = G.regions; r; r = r->next)
        if (c >= r->base && c < r->base + (r->mapped > r->n ? r->mapped : r->n))
            return r;
    return NULL;
}

/* Resolves [p, p+n) for a copy: *out is where the stand-in reaches the
 * bytes, *kind what memory it is (-1 pageable).  Invalid past the end. */
static cudaError_t resolve_locked(const void *p, size_t n, char **out, int *kind)
{
    region *r = find_locked(p);
    *kind = -1;
    *out = (char *)p;
    if (!r)
        return p || !n ? cudaSuccess : cudaErrorInvalidValue;
    size_t off = (size_t)((const char *)p - r->base);
    if (off > r->n || n > r->n - off)
        return cudaErrorInvalidValue;
    *kind = r->kind;
    if (r->kind == MEM_DEVICE)
        *out = r->shadow + off;
    return cudaSuccess;
}

static cudaError_t add_region(char *base, char *shadow, size_t n, size_t mapped, int kind)
{
    region *r = calloc(1, sizeof *r);
    if (!r)
        return cudaErrorMemoryAllocation;
    *r = (region){base, shadow, n, mapped, kind, cur_dev, G.regions};
    G.regions = r;
    return cudaSuccess;
}

static region *unlink_locked(const void *p, int want_kind)
{
    for (region **pp = &G.regions; *pp; pp = &(*pp)->next) {
        if ((*pp)->base == p && ((*pp)->kind == want_kind || want_kind < 0)) {
            region *r = *pp;
            *pp = r->next;
            return r;
        }
    }
    return NULL;
}

API cudaError_t cudaMalloc(void **devPtr, size_t size)
{
    if (!devPtr)
        return ret(cudaErrorInvalidValue);
    *devPtr = NULL;
    cudaError_t e = gate();
    if (e)
        return ret(e);
    if (size == 0)
        return cudaSuccess;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t mapped = (size + page - 1) / page * page;
    int fd = memfd_create("cudasim", MFD_CLOEXEC);
    if (fd < 0)
        return ret(cudaErrorMemoryAllocation);
    char *shadow = MAP_FAILED, *base = MAP_FAILED;
    if (ftruncate(fd, (off_t)mapped) == 0) {
        shadow = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        base = mmap(NULL, mapped, PROT_NONE, MAP_SHARED, fd, 0);
    }
    close(fd);
    if (shadow == MAP_FAILED || base == MAP_FAILED) {
        if (shadow != MAP_FAILED)
            munmap(shadow, mapped);
        if (base != MAP_FAILED)
            munmap(base, mapped);
        return ret(cudaErrorMemoryAllocation);
    }
    /* Fresh device memory holds garbage, not zeros. */
    memset(shadow, 0xCD, mapped);
    pthread_mutex_lock(&G.mu);
    e = add_region(base, shadow, size, mapped, MEM_DEVICE);
    pthread_mutex_unlock(&G.mu);
    if (e) {
        munmap(shadow, mapped);
        munmap(base, mapped);
        return ret(e);
    }
    *devPtr = base;
    return cudaSuccess;
}

static cudaError_t host_alloc(void **p, size_t size, int kind)
{
    if (!p)
        return ret(cudaErrorInvalidValue);
    *p = NULL;
    cudaError_t e = gate();
    if (e)
        return ret(e);
    if (size == 0)
        return kind == MEM_MANAGED ? ret(cudaErrorInvalidValue) : cudaSuccess;
    void *m = NULL;
    if (posix_memalign(&m, 4096, size))
        return ret(cudaErrorMemoryAllocation);
    memset(m, 0xCD, size);
    pthread_mutex_lock(&G.mu);
    e = add_region(m, NULL, size, 0, kind);
    pthread_mutex_unlock(&G.mu);
    if (e) {
        free(m);
        return ret(e);
    }
    *p = m;
    return cudaSuccess;
}

API cudaError_t cudaMallocManaged(void **devPtr, size_t size, unsigned int flags)
{
    (void)flags;
    return host_alloc(devPtr, size, MEM_MANAGED);
}

API cudaError_t cudaMallocHost(void **ptr, size_t size)
{
    return host_alloc(ptr, size, MEM_HOSTALLOC);
}

API cudaError_t cudaHostAlloc(void **pHost, size_t size, unsigned int flags)
{
    (void)flags;
    return host_alloc(pHost, size, MEM_HOSTALLOC);
}

API cudaError_t cudaFree(void *devPtr)
{
    if (!devPtr)
        return cudaSuccess;
    pthread_mutex_lock(&G.mu);
    cudaError_t e = gate_locked();
    drain_locked(); /* cudaFree synchronizes: queued copies land first */
    region *r = unlink_locked(devPtr, MEM_DEVICE);
    if (!r)
        r = unlink_locked(devPtr, MEM_MANAGED);
    pthread_mutex_unlock(&G.mu);
    if (!r)
        return ret(e ? e : cudaErrorInvalidValue);
    if (r->kind == MEM_DEVICE) {
        munmap(r->base, r->mapped);
        munmap(r->shadow, r->mapped);
    } else {
        free(r->base);
    }
    free(r);
    return ret(e);
}

API cudaError_t cudaFreeHost(void *ptr)
{
    if (!ptr)
        return cudaSuccess;
    pthread_mutex_lock(&G.mu);
    cudaError_t e = gate_locked();
    drain_locked();
    region *r = unlink_locked(ptr, MEM_HOSTALLOC);
    pthread_mutex_unlock(&G.mu);
    if (!r)
        return ret(e ? e : cudaErrorInvalidValue);
    free(r->base);
    free(r);
    return ret(e);
}

API cudaError_t cudaHostRegister(void *ptr, size_t size, unsigned int flags)
{
    (void)flags;
    if (!ptr || !size)
        return ret(cudaErrorInvalidValue);
    pthread_mutex_lock(&G.mu);
    cudaError_t e = gate_locked();
    if (!e) {
        for (region *r = G.regions; r && !e; r = r->next) {
            size_t rn = r->mapped > r->n ? r->mapped : r->n;
            if ((char *)ptr < r->base + rn && r->base < (char *)ptr + size)
                e = cudaErrorHostMemoryAlreadyRegistered;
        }
    }
    if (!e)
        e = add_region(ptr, NULL, size, 0, MEM_REGISTERED);
    pthread_mutex_unlock(&G.mu);
    return ret(e);
}

API cudaError_t cudaHostUnregister(void *ptr)
{
    pthread_mutex_lock(&G.mu);
    cudaError_t e = gate_locked();
    drain_locked();
    region *r = unlink_locked(ptr, MEM_REGISTERED);
    pthread_mutex_unlock(&G.mu);
    if (!r)
        return ret(e ? e : cudaErrorHostMemoryNotRegistered);
    free(r);
    return ret(e);
}

API cudaError_t cudaPointerGetAttributes(struct cudaPointerAttributes *a, const void *ptr)
{
    if (!a)
        return ret(cudaErrorInvalidValue);
    pthread_mutex_lock(&G.mu);
    cudaError_t e = gate_locked();
    region *r = e ? NULL : find_locked(ptr);
    memset(a, 0, sizeof *a);
    a->device = -2; /* CUDA's value for unregistered memory */
    if (r) {
        a->device = r->dev;
        switch (r->kind) {
        case MEM_DEVICE:
            a->type = cudaMemoryTypeDevice;
            a->devicePointer = (void *)ptr;
            break;
        case MEM_MANAGED:
            a->type = cudaMemoryTypeManaged;
            a->devicePointer = a->hostPointer = (void *)ptr;
            break;
        default:
            a->type = cudaMemoryTypeHost;
            a->devicePointer = a->hostPointer = (void *)ptr;
            break;
        }
    } else if (!e) {
        a->type = cudaMemoryTypeUnregistered;
        a->hostPointer = (void *)ptr;
    }
    pthread_mutex_unlock(&G.mu);
    return ret(e);
}

/* ---- streams and events ---------------------------------------------------- */

static void *worker(void *arg);

/* G.mu held. */
static cudaError_t stream_make_locked(sstream **out, unsigned flags, int legacy)
{
    sstream *s = calloc(1, sizeof *s);
    if (!s)
        return cudaErrorMemoryAllocation;
    s->flags = flags;
    s->legacy = legacy;
    s->live = 1;
    s->rng = G.seed + 0x1000193u * ++G.nstreams;
    if (pthread_create(&s->thread, NULL, worker, s)) {
        free(s);
        return cudaErrorMemoryAllocation;
    }
    s->next_all = G.streams;
    G.streams = s;
    *out = s;
    return cudaSuccess;
}

/* The stream a handle names (the legacy stream for 0), NULL when it names
 * none that is alive.  G.mu held. */
static sstream *stream_of_locked(cudaStream_t h)
{
    if (h == NULL || h == cudaStreamLegacy) {
        if (!G.legacy && stream_make_locked(&G.legacy, 0, 1))
            return NULL;
        return G.legacy;
    }
    for (sstream *s = G.streams; s; s = s->next_all)
        if ((cudaStream_t)s == h)
            return s->live ? s : NULL;
    return NULL;
}

static sevent *event_of_locked(cudaEvent_t h)
{
    for (sevent *e = G.events; e; e = e->next_all)
        if ((cudaEvent_t)e == h)
            return e->live ? e : NULL;
    return NULL;
}

static void push_locked(sstream *s, op *o)
{
    o->next = NULL;
    if (s->tail)
        s->tail->next = o;
    else
        s->head = o;
    s->tail = o;
    s->submitted++;
    pthread_cond_broadcast(&G.cv);
}

static cudaError_t push_wait_locked(sstream *s, sstream *on, uint64_t seq)
{
    if (on == s || on->completed >= seq)
        return cudaSuccess;
    op *w = calloc(1, sizeof *w);
    if (!w)
        return cudaErrorMemoryAllocation;
    w->kind = OP_WAIT;
    w->wait_s = on;
    w->wait_seq = seq;
    push_locked(s, w);
    return cudaSuccess;
}

/* Queues o on s, after the implicit waits of the legacy default stream. */
static cudaError_t enqueue_locked(sstream *s, op *o)
{
    cudaError_t e = cudaSuccess;
    if (s->legacy) {
        for (sstream *b = G.streams; b && !e; b = b->next_all)
            if (b->live && !b->legacy && !(b->flags & cudaStreamNonBlocking))
                e = push_wait_locked(s, b, b->submitted);
    } else if (!(s->flags & cudaStreamNonBlocking) && G.legacy) {
        e = push_wait_locked(s, G.legacy, G.legacy->submitted);
    }
    if (e)
        return e;
    push_locked(s, o);
    return cudaSuccess;
}

static void nap(sstream *s)
{
    if (!G.max_delay_us)
        return;
    uint64_t r = splitmix(&s->rng);
    if (r & 1)
        return;
    struct timespec ts = {0, (long)((r >> 8) % G.max_delay_us) * 1000};
    nanosleep(&ts, NULL);
}

static void *worker(void *arg)
{
    sstream *s = arg;
    pthread_mutex_lock(&G.mu);
    for (;;) {
        while (!s->head && !s->stop)
            pthread_cond_wait(&G.cv, &G.mu);
        op *o = s->head;
        if (!o)
            break;
        if (o->kind == OP_WAIT) {
            while (o->wait_s->completed < o->wait_seq)
                pthread_cond_wait(&G.cv, &G.mu);
        }
        int run = o->kind != OP_WAIT && !G.sticky;
        if (run && o->kind == OP_COPY) {
            G.copies++;
            if (G.fail_at && --G.fail_at == 0) {
                G.sticky = cudaErrorIllegalAddress;
                run = 0;
            }
        }
        pthread_mutex_unlock(&G.mu);
        if (o->kind != OP_WAIT)
            nap(s);
        if (o->kind == OP_FN) {
            o->fn(o->arg, run);
        } else if (run) {
            cudasim__lock_memory();
            if (o->kind == OP_COPY)
                memmove(o->dst, o->src, o->n);
            else
                memset(o->dst, o->val, o->n);
            cudasim__unlock_memory();
        }
        free(o->owned);
        pthread_mutex_lock(&G.mu);
        s->head = o->next;
        if (!s->head)
            s->tail = NULL;
        s->completed++;
        free(o);
        pthread_cond_broadcast(&G.cv);
    }
    pthread_mutex_unlock(&G.mu);
    return NULL;
}

static void wait_pos_locked(sstream *s, uint64_t seq)
{
    /* After fork the parent's queues never run: calls fail, not hang. */
    while (!G.forked && s->completed < seq)
        pthread_cond_wait(&G.cv, &G.mu);
}

/* Waits for every stream's queued work. */
static void drain_locked(void)
{
    for (sstream *s = G.streams; s; s = s->next_all)
        wait_pos_locked(s, s->submitted);
}

API cudaError_t cudaStreamCreateWithFlags(cudaStream_t *pStream, unsigned int flags)
{
    if (!pStream || (flags & ~(unsigned)cudaStreamNonBlocking))
        return ret(cudaErrorInvalidValue);
    pthread_mutex_lock(&G.mu);
    cudaError_t e = gate_locked();
    sstream *s = NULL;
    if (!e)
        e = stream_make_locked(&s, flags, 0);
    pthread_mutex_unlock(&G.mu);
    *pStream = e ? NULL : (cudaStream_t)s;
    return ret(e);
}

API cudaError_t cudaStreamCreate(cudaStream_t *pStream)
{
    return cudaStreamCreateWithFlags(pStream, cudaStreamDefault);
}

/* Waits for the stream's work, then ends its thread.  (CUDA returns at once
 * and lets the work finish; either way the handle is dead from here.) */
API cudaError_t cudaStreamDestroy(cudaStream_t h)
{
    pthread_mutex_lock(&G.mu);
    cudaError_t e = gate_locked();
    sstream *s = h == NULL || h == cudaStreamLegacy ? NULL : stream_of_locked(h);
    if (!s) {
        pthread_mutex_unlock(&G.mu);
        return ret(e ? e : cudaErrorInvalidResourceHandle);
    }
    s->live = 0;
    wait_pos_locked(s, s->submitted);
    s->stop = 1;
    pthread_cond_broadcast(&G.cv);
    pthread_mutex_unlock(&G.mu);
    pthread_join(s->thread, NULL);
    return ret(e);
}

API cudaError_t cudaStreamSynchronize(cudaStream_t h)
{
    pthread_mutex_lock(&G.mu);
    cudaError_t e = gate_locked();
    sstream *s = stream_of_locked(h);
    if (s)
        wait_pos_locked(s, s->submitted);
    else if (!e)
        e = cudaErrorInvalidResourceHandle;
    if (!e)
        e = G.sticky; /* a fault while waiting */
    pthread_mutex_unlock(&G.mu);
    return ret(e);
}

API cudaError_t cudaStreamQuery(cudaStream_t h)
{
    pthread_mutex_lock(&G.mu);
    cudaError_t e = gate_locked();
    sstream *s = e ? NULL : stream_of_locked(h);
    if (!e && !s)
        e = cudaErrorInvalidResourceHandle;
    else if (!e && s->completed < s->submitted)
        e = cudaErrorNotReady;
    pthread_mutex_unlock(&G.mu);
    return e == cudaErrorNotReady ? e : ret(e);
}

API cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags)
{
    if (!event || (flags & ~(unsigned)(cudaEventBlockingSync | cudaEventDisableTiming |
                                       cudaEventInterprocess)))
        return ret(cudaErrorInvalidValue);
    pthread_mutex_lock(&G.mu);
    cudaError_t e = gate_locked();
    sevent *ev = e ? NULL : calloc(1, sizeof *ev);
    if (!e && !ev)
        e = cudaErrorMemoryAllocation;
    if (ev) {
        ev->live = 1;
        ev->next_all = G.events;
        G.events = ev;
    }
    pthread_mutex_unlock(&G.mu);
    *event = (cudaEvent_t)ev;
    return ret(e);
}

API cudaError_t cudaEventCreate(cudaEvent_t *event)
{
    return cudaEventCreateWithFlags(event, cudaEventDefault);
}

API cudaError_t cudaEventDestroy(cudaEvent_t h)
{
    pthread_mutex_lock(&G.mu);
    cudaError_t e = gate_locked();
    sevent *ev = event_of_locked(h);
    if (ev)
        ev->live = 0;
    pthread_mutex_unlock(&G.mu);
    return ret(ev ? e : e ? e : cudaErrorInvalidResourceHandle);
}

API cudaError_t cudaEventRecord(cudaEvent_t h, cudaStream_t stream)
{
    pthread_mutex_lock(&G.mu);
    cudaError_t e = gate_locked();
    sevent *ev = e ? NULL : event_of_locked(h);
    sstream *s = e ? NULL : stream_of_locked(stream);
    if (!e && (!ev || !s))
        e = cudaErrorInvalidResourceHandle;
    if (!e && s->legacy) {
        /* The record is itself work on the legacy stream: it follows the
         * blocking streams' earlier work. */
        for (sstream *b = G.streams; b && !e; b = b->next_all)
            if (b->live && !b->legacy && !(b->flags & cudaStreamNonBlocking))
                e = push_wait_locked(s, b, b->submitted);
    } else if (!e && !(s->flags & cudaStreamNonBlocking) && G.legacy) {
        e = push_wait_locked(s, G.legacy, G.legacy->submitted);
    }
    if (!e) {
        ev->s = s;
        ev->seq = s->submitted;
    }
    pthread_mutex_unlock(&G.mu);
    return ret(e);
}

API cudaError_t cudaEventQuery(cudaEvent_t h)
{
    pthread_mutex_lock(&G.mu);
    cudaError_t e = gate_locked();
    sevent *ev = e ? NULL : event_of_locked(h);
    if (!e && !ev)
        e = cudaErrorInvalidResourceHandle;
    else if (!e && ev->s && ev->s->completed < ev->seq)
        e = cudaErrorNotReady;
    pthread_mutex_unlock(&G.mu);
    return e == cudaErrorNotReady ? e : ret(e);
}

API cudaError_t cudaEventSynchronize(cudaEvent_t h)
{
    pthread_mutex_lock(&G.mu);
    cudaError_t e = gate_locked();
    sevent *ev = e ? NULL : event_of_locked(h);
    if (!e && !ev)
        e = cudaErrorInvalidResourceHandle;
    if (!e && ev->s)
        wait_pos_locked(ev->s, ev->seq);
    if (!e)
        e = G.sticky;
    pthread_mutex_unlock(&G.mu);
    return ret(e);
}

API cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end)
{
    (void)start;
    (void)end;
    if (ms)
        *ms = 0.0f;
    return ret(cudaErrorNotSupported); /* timing is for the GPU check */
}

API cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t h, unsigned int flags)
{
    pthread_mutex_lock(&G.mu);
    cudaError_t e = gate_locked();
    sevent *ev = e ? NULL : event_of_locked(h);
    sstream *s = e ? NULL : stream_of_locked(stream);
    if (!e && (!ev || !s))
        e = cudaErrorInvalidResourceHandle;
    if (!e && flags)
        e = cudaErrorInvalidValue;
    if (!e && ev->s)
        e = push_wait_locked(s, ev->s, ev->seq);
    pthread_mutex_unlock(&G.mu);
    return ret(e);
}

API cudaError_t cudaDeviceSynchronize(void)
{
    pthread_mutex_lock(&G.mu);
    cudaError_t e = gate_locked();
    if (!e)
        drain_locked();
    if (!e)
        e = G.sticky;
    pthread_mutex_unlock(&G.mu);
    return ret(e);
}

/* ---- copies ---------------------------------------------------------------- */

static int is_dev(int kind)
{
    return kind == MEM_DEVICE || kind == MEM_MANAGED;
}

static cudaError_t copy(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind,
                        cudaStream_t stream, int sync, int memset_val, int is_set)
{
    pthread_mutex_lock(&G.mu);
    cudaError_t e = gate_locked();
    sstream *s = e ? NULL : stream_of_locked(stream);
    if (!e && !s)
        e = cudaErrorInvalidResourceHandle;
    char *d = NULL, *sr = NULL;
    int dk = -1, sk = -1;
    if (!e)
        e = resolve_locked(dst, n, &d, &dk);
    if (!e && !is_set)
        e = resolve_locked(src, n, &sr, &sk);
    if (!e && !is_set) {
        /* An explicit kind must match the memory: the device side must be
         * device (or managed) memory, the host side must not be device. */
        int dev_dst = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
        int dev_src = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
        if (kind > cudaMemcpyDefault)
            e = cudaErrorInvalidMemcpyDirection;
        else if (kind != cudaMemcpyDefault &&
                 ((dev_dst && !is_dev(dk)) || (!dev_dst && dk == MEM_DEVICE) ||
                  (dev_src && !is_dev(sk)) || (!dev_src && sk == MEM_DEVICE)))
            e = cudaErrorInvalidValue;
    }
    if (!e && is_set && dk != MEM_DEVICE && dk != MEM_MANAGED)
        e = cudaErrorInvalidValue;
    op *o = NULL;
    if (!e && n) {
        o = calloc(1, sizeof *o);
        if (!o)
            e = cudaErrorMemoryAllocation;
    }
    if (!e && o) {
        o->kind = is_set ? OP_SET : OP_COPY;
        o->dst = d;
        o->src = sr;
        o->n = n;
        o->val = memset_val;
        if (!is_set && !is_dev(dk) && !is_dev(sk)) {
            sync = 1; /* host to host: fully synchronous */
        } else if (!is_set && sk == -1) {
            /* From pageable memory: the stream's earlier work first, then
             * the source is staged and may be reused on return. */
            wait_pos_locked(s, s->submitted);
            o->owned = malloc(n);
            if (!o->owned) {
                free(o);
                o = NULL;
                e = cudaErrorMemoryAllocation;
            } else {
                memcpy(o->owned, sr, n);
                o->src = o->owned;
            }
        }
        if (!is_set && dk == -1)
            sync = 1; /* to pageable memory: done when the call returns */
    }
    if (!e && o) {
        e = enqueue_locked(s, o);
        if (e)
            free(o);
    }
    if (!e && sync)
        wait_pos_locked(s, s->submitted);
    pthread_mutex_unlock(&G.mu);
    return ret(e);
}

API cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count,
                                enum cudaMemcpyKind kind, cudaStream_t stream)
{
    return copy(dst, src, count, kind, stream, 0, 0, 0);
}

API cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind)
{
    return copy(dst, src, count, kind, NULL, 1, 0, 0);
}

API cudaError_t cudaMemsetAsync(void *devPtr, int value, size_t count, cudaStream_t stream)
{
    return copy(devPtr, NULL, count, cudaMemcpyDefault, stream, 0, value, 1);
}

API cudaError_t cudaMemset(void *devPtr, int value, size_t count)
{
    return copy(devPtr, NULL, count, cudaMemcpyDefault, NULL, 1, value, 1);
}

/* ---- devices and errors ------------------------------------------------------ */

API cudaError_t cudaGetDeviceCount(int *count)
{
    cudaError_t e = gate();
    if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver) {
        if (count)
            *count = 0;
        return ret(e);
    }
    if (!count)
        return ret(cudaErrorInvalidValue);
    *count = ndevices();
    return ret(e);
}

API cudaError_t cudaGetDevice(int *device)
{
    cudaError_t e = gate();
    if (!e && !device)
        e = cudaErrorInvalidValue;
    if (!e)
        *device = cur_dev;
    return ret(e);
}

API cudaError_t cudaSetDevice(int device)
{
    cudaError_t e = gate();
    if (!e && (device < 0 || device >= ndevices()))
        e = cudaErrorInvalidDevice;
    if (!e)
        cur_dev = device;
    return ret(e);
}

API cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *prop, int device)
{
    cudaError_t e = gate();
    if (!e && (!prop || device < 0 || device >= ndevices()))
        e = cudaErrorInvalidValue;
    if (!e) {
        memset(prop, 0, sizeof *prop);
        snprintf(prop->name, sizeof prop->name, "cudasim stand-in %d", device);
        prop->major = 9;
        prop->totalGlobalMem = (size_t)1 << 34;
        prop->unifiedAddressing = 1;
    }
    return ret(e);
}

API cudaError_t cudaGetLastError(void)
{
    pthread_mutex_lock(&G.mu);
    cudaError_t sticky = G.forked ? cudaErrorInitializationError : G.sticky;
    pthread_mutex_unlock(&G.mu);
    cudaError_t e = last_err;
    last_err = cudaSuccess;
    return sticky ? sticky : e;
}

API cudaError_t cudaPeekAtLastError(void)
{
    pthread_mutex_lock(&G.mu);
    cudaError_t sticky = G.forked ? cudaErrorInitializationError : G.sticky;
    pthread_mutex_unlock(&G.mu);
    return sticky ? sticky : last_err;
}

static const struct {
    cudaError_t e;
    const char *name, *text;
} errors[] = {
    {cudaSuccess, "cudaSuccess", "no error"},
    {cudaErrorInvalidValue, "cudaErrorInvalidValue", "invalid argument"},
    {cudaErrorMemoryAllocation, "cudaErrorMemoryAllocation", "out of memory"},
    {cudaErrorInitializationError, "cudaErrorInitializationError", "initialization error"},
    {cudaErrorInsufficientDriver, "cudaErrorInsufficientDriver",
     "CUDA driver version is insufficient for CUDA runtime version"},
    {cudaErrorNoDevice, "cudaErrorNoDevice", "no CUDA-capable device is detected"},
    {cudaErrorInvalidDevice, "cudaErrorInvalidDevice", "invalid device ordinal"},
    {cudaErrorInvalidResourceHandle, "cudaErrorInvalidResourceHandle", "invalid resource handle"},
    {cudaErrorInvalidMemcpyDirection, "cudaErrorInvalidMemcpyDirection",
     "invalid copy direction for memcpy"},
    {cudaErrorNotReady, "cudaErrorNotReady", "device not ready"},
    {cudaErrorIllegalAddress, "cudaErrorIllegalAddress",
     "an illegal memory access was encountered"},
    {cudaErrorHostMemoryAlreadyRegistered, "cudaErrorHostMemoryAlreadyRegistered",
     "part or all of the requested memory range is already mapped"},
    {cudaErrorHostMemoryNotRegistered, "cudaErrorHostMemoryNotRegistered",
     "pointer does not correspond to a registered memory region"},
    {cudaErrorNotSupported, "cudaErrorNotSupported", "operation not supported"},
};

API const char *cudaGetErrorName(cudaError_t error)
{
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
        if (errors[i].e == error)
            return errors[i].name;
    return "cudaErrorUnknown";
}

API const char *cudaGetErrorString(cudaError_t error)
{
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
        if (errors[i].e == error)
            return errors[i].text;
    return "unknown error";
}

/* ---- for the NCCL stand-in (cudasim_internal.h) ------------------------------- */

/* Streams racing on the same device bytes is a GPU-level race the tests
 * provoke on purpose (the fence test without its fence): the stand-in moves
 * bytes under this lock, so ThreadSanitizer reports only host-side races,
 * such as the host touching pinned memory a stream is still copying. */
static pthread_mutex_t memory_mu = PTHREAD_MUTEX_INITIALIZER;

void cudasim__lock_memory(void)
{
    pthread_mutex_lock(&memory_mu);
}

void cudasim__unlock_memory(void)
{
    pthread_mutex_unlock(&memory_mu);
}

int cudasim__device(void)
{
    return cur_dev;
}

cudaError_t cudasim__resolve_device(const void *p, size_t n, char **out)
{
    pthread_mutex_lock(&G.mu);
    int kind;
    cudaError_t e = resolve_locked(p, n, out, &kind);
    if (!e && n && kind != MEM_DEVICE && kind != MEM_MANAGED)
        e = cudaErrorInvalidValue;
    pthread_mutex_unlock(&G.mu);
    return e;
}

cudaError_t cudasim__enqueue_fn(cudaStream_t stream, void (*fn)(void *arg, int run), void *arg)
{
    pthread_mutex_lock(&G.mu);
    cudaError_t e = gate_locked();
    sstream *s = e ? NULL : stream_of_locked(stream);
    if (!e && !s)
        e = cudaErrorInvalidResourceHandle;
    op *o = e ? NULL : calloc(1, sizeof *o);
    if (!e && !o)
        e = cudaErrorMemoryAllocation;
    if (!e) {
        o->kind = OP_FN;
        o->fn = fn;
        o->arg = arg;
        e = enqueue_locked(s, o);
        if (e)
            free(o);
    }
    pthread_mutex_unlock(&G.mu);
    return e;
}

/* ---- the stand-in's own controls (cudasim.h) ---------------------------------- */

API void cudasim_fail_copy_at(uint64_t n)
{
    pthread_mutex_lock(&G.mu);
    init_locked();
    G.fail_at = n;
    pthread_mutex_unlock(&G.mu);
}

API uint64_t cudasim_copies(void)
{
    pthread_mutex_lock(&G.mu);
    uint64_t n = G.copies;
    pthread_mutex_unlock(&G.mu);
    return n;
}

API void cudasim_reset(void)
{
    pthread_mutex_lock(&G.mu);
    G.sticky = cudaSuccess;
    G.fail_at = 0;
    pthread_mutex_unlock(&G.mu);
    last_err = cudaSuccess;
}

API uint64_t cudasim_seed(void)
{
    pthread_mutex_lock(&G.mu);
    init_locked();
    uint64_t s = G.seed;
    pthread_mutex_unlock(&G.mu);
    return s;
}

API int cudasim_read(void *host, const void *dev, size_t n)
{
    pthread_mutex_lock(&G.mu);
    char *p;
    int kind;
    cudaError_t e = resolve_locked(dev, n, &p, &kind);
    if (!e && kind != MEM_DEVICE)
        e = cudaErrorInvalidValue;
    if (!e) {
        cudasim__lock_memory();
        memcpy(host, p, n);
        cudasim__unlock_memory();
    }
    pthread_mutex_unlock(&G.mu);
    return e ? -1 : 0;
}

/* fork: the child gets the locks free and, when the parent had called
 * CUDA, the forked state (see the top of this file).  The locks are held
 * across fork so that no stream thread is inside them when it happens. */
static void fork_prepare(void)
{
    pthread_mutex_lock(&G.mu);
    pthread_mutex_lock(&memory_mu);
}

static void fork_parent(void)
{
    pthread_mutex_unlock(&memory_mu);
    pthread_mutex_unlock(&G.mu);
}

static void fork_child(void)
{
    if (G.init)
        G.forked = 1;
    pthread_mutex_unlock(&memory_mu);
    pthread_mutex_unlock(&G.mu);
}

__attribute__((constructor)) static void load(void)
{
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* Ends the legacy stream's thread and frees what was kept for handle
 * checks, so leak checkers see a clean exit.  A forked child has none of
 * those threads and leaves it all alone. */
__attribute__((destructor)) static void unload(void)
{
    pthread_mutex_lock(&G.mu);
    if (G.forked) {
        pthread_mutex_unlock(&G.mu);
        return;
    }
    for (sstream *s = G.streams; s; s = s->next_all) {
        if (!s->stop) {
            wait_pos_locked(s, s->submitted);
            s->stop = 1;
            pthread_cond_broadcast(&G.cv);
            pthread_mutex_unlock(&G.mu);
            pthread_join(s->thread, NULL);
            pthread_mutex_lock(&G.mu);
        }
    }
    while (G.streams) {
        sstream *s = G.streams;
        G.streams = s->next_all;
        free(s);
    }
    while (G.events) {
        sevent *e = G.events;
        G.events = e->next_all;
        free(e);
    }
    G.legacy = NULL;
    pthread_mutex_unlock(&G.mu);
}
