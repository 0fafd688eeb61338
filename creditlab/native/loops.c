/* Compiled CPU loops of creditlab (see creditlab/native/__init__.py).
 *
 * Each loop runs a whole simulation in one call, with the equations and the
 * order of operations of the model's PyTorch step (the reference path), so
 * that the two fire the same spikes.  Trials of a batch are independent and
 * run one after another, each with its state kept in cache.  Every function
 * exists for double and float (suffix _f64 / _f32); arithmetic stays in the
 * state's precision, as in PyTorch.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L      /* pthreads under -std=c99 */
#endif
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* GCC builds the elementwise loops for AVX2 too and picks the widest the CPU runs
 * (a build may define WIDE itself: benchmarks/floor/eprop_pass_floor.c does) */
#ifndef WIDE
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define WIDE __attribute__((target_clones("avx2", "default")))
#else
#define WIDE
#endif
#endif

/* CUBA network (creditlab.models.cuba.CUBA.step), one step per iteration:
 *   (g_e, g_i, v) <- offset + P (g_e, g_i, v)     P: 3x3 propagator, row-major
 *   v <- v_reset where the neuron is refractory (free_at > step)
 *   z = v > v_th
 *   g[targets[i, k]] += weights[i, k] for every spiking i (targets index the
 *   2n currents g_e, g_i of the trial; padding has weight 0)
 *   v <- v_reset, free_at <- step + n_ref where z
 * vg [B, 3, n] and free_at [B, n] are updated in place; counts [T, B] gets
 * the number of spikes of each step; spikes [T, R, n] (zeroed by the caller,
 * or NULL) gets the spikes of trial b in row slot[b] when slot[b] >= 0.
 * scratch holds 2n indices: this step's spikes and the refractory neurons,
 * which are kept in a list (about rate x n x t_ref of them) so that the
 * update of all n neurons is one branch-free, vectorisable loop. */
#define CUBA_RUN(NAME, REAL)                                                        \
static WIDE void NAME##_update(int64_t n, const REAL *prop, const REAL *offset,     \
                               REAL *restrict ge, REAL *restrict gi,                \
                               REAL *restrict v)                                    \
{                                                                                   \
    const REAL p0 = prop[0], p1 = prop[1], p2 = prop[2], p3 = prop[3],              \
               p4 = prop[4], p5 = prop[5], p6 = prop[6], p7 = prop[7],              \
               p8 = prop[8], o0 = offset[0], o1 = offset[1], o2 = offset[2];        \
    for (int64_t j = 0; j < n; ++j) {                                               \
        const REAL e = ge[j], i = gi[j], m = v[j];                                  \
        ge[j] = o0 + p0 * e + p1 * i + p2 * m;                                      \
        gi[j] = o1 + p3 * e + p4 * i + p5 * m;                                      \
        v[j] = o2 + p6 * e + p7 * i + p8 * m;                                       \
    }                                                                               \
}                                                                                   \
                                                                                    \
void NAME(int64_t n_steps, int64_t batch, int64_t n, int64_t t0,                    \
          const REAL *prop, const REAL *offset, REAL v_th, REAL v_reset,            \
          int64_t n_ref, const int64_t *targets, const REAL *weights,               \
          int64_t fan_out, REAL *vg, int64_t *free_at, REAL *counts,                \
          uint8_t *spikes, const int64_t *slot, int64_t n_recorded,                 \
          int64_t *scratch)                                                         \
{                                                                                   \
    int64_t *spiked = scratch, *held = scratch + n;                                 \
    for (int64_t b = 0; b < batch; ++b) {                                           \
        REAL *ge = vg + b * 3 * n, *gi = ge + n, *v = gi + n;                       \
        int64_t *fa = free_at + b * n;                                              \
        int64_t n_held = 0;                                                         \
        for (int64_t j = 0; n_ref && j < n; ++j)                                    \
            if (fa[j] > t0) held[n_held++] = j;                                     \
        for (int64_t t = 0; t < n_steps; ++t) {                                     \
            const int64_t step = t0 + t;                                            \
            NAME##_update(n, prop, offset, ge, gi, v);                              \
            int64_t kept = 0;                                                       \
            for (int64_t h = 0; h < n_held; ++h)                                    \
                if (fa[held[h]] > step) {                                           \
                    v[held[h]] = v_reset;                                           \
                    held[kept++] = held[h];                                         \
                }                                                                   \
            n_held = kept;                                                          \
            int64_t count = 0;                                                      \
            for (int64_t j = 0; j < n; ++j)                                         \
                if (v[j] > v_th) spiked[count++] = j;                               \
            for (int64_t s = 0; s < count; ++s) {                                   \
                const int64_t *row = targets + spiked[s] * fan_out;                 \
                const REAL *w = weights + spiked[s] * fan_out;                      \
                for (int64_t k = 0; k < fan_out; ++k) ge[row[k]] += w[k];           \
            }                                                                       \
            for (int64_t s = 0; s < count; ++s) {                                   \
                v[spiked[s]] = v_reset;                                             \
                if (n_ref) {                                                        \
                    fa[spiked[s]] = step + n_ref;                                   \
                    held[n_held++] = spiked[s];                                     \
                }                                                                   \
            }                                                                       \
            counts[t * batch + b] = (REAL)count;                                    \
            if (spikes && slot[b] >= 0) {                                           \
                uint8_t *out = spikes + (t * n_recorded + slot[b]) * n;             \
                for (int64_t s = 0; s < count; ++s) out[spiked[s]] = 1;             \
            }                                                                       \
        }                                                                           \
    }                                                                               \
}

CUBA_RUN(cuba_run_f64, double)
CUBA_RUN(cuba_run_f32, float)

/* Echo-state reservoir (EchoState.states; teacher-forced feedback is part of
 * the precomputed current):
 *   h_{t+1} = (1 - leak) h_t + leak tanh(current_t + W h_t)
 * with W in CSR form (crow [n + 1], col, val).  current and out are [T, B, n];
 * h0 [B, n] is the state before the first step. */
#define ESN_STATES(NAME, REAL, TANH)                                                \
void NAME(int64_t n_steps, int64_t batch, int64_t n, const REAL *current,          \
          const int64_t *crow, const int32_t *col, const REAL *val, REAL keep,      \
          REAL leak, const REAL *h0, REAL *out)                                     \
{                                                                                   \
    for (int64_t b = 0; b < batch; ++b) {                                           \
        const REAL *prev = h0 + b * n;                                              \
        for (int64_t t = 0; t < n_steps; ++t) {                                     \
            REAL *h = out + (t * batch + b) * n;                                    \
            const REAL *cur = current + (t * batch + b) * n;                        \
            for (int64_t j = 0; j < n; ++j) {                                       \
                /* four partial sums: one chain of dependent additions would    \
                 * wait out the adder's latency at every synapse */              \
                REAL s0 = 0, s1 = 0, s2 = 0, s3 = 0;                                \
                int64_t k = crow[j];                                                \
                for (; k + 3 < crow[j + 1]; k += 4) {                               \
                    s0 += val[k] * prev[col[k]];                                    \
                    s1 += val[k + 1] * prev[col[k + 1]];                            \
                    s2 += val[k + 2] * prev[col[k + 2]];                            \
                    s3 += val[k + 3] * prev[col[k + 3]];                            \
                }                                                                   \
                for (; k < crow[j + 1]; ++k) s0 += val[k] * prev[col[k]];           \
                h[j] = keep * prev[j] + leak * TANH(cur[j] + ((s0 + s1) + (s2 + s3))); \
            }                                                                       \
            prev = h;                                                               \
        }                                                                           \
    }                                                                               \
}

ESN_STATES(esn_states_f64, double, tanh)
ESN_STATES(esn_states_f32, float, tanhf)

/* e-prop eligibility traces of a LIF/ALIF layer, Bellec et al. (2020) form
 * without the reset term (EProp._traces_paper), for a chunk of K consecutive
 * steps, each followed by its gradient sum.  Step k of the chunk, for
 * postsynaptic j, batch entry b and presynaptic i (the last n_alif neurons adapt):
 *   eps_a[j,b,i] <- (rho - beta_j psi[k][b,j]) eps_a[j,b,i] + psi[k][b,j] zbar[k][b,i]
 *   ebar[j,b,i]  <- kappa ebar[j,b,i] + psi[k+1][b,j] zbar[k+1][b,i]  (- psi[k+1][b,j] beta_j eps_a[j,b,i])
 *   grad[j,i]    += sum_b signal[k][b,j] ebar[j,b,i]              (when active[k])
 *   e_sum[j,i]   += sum_b psi[k+1][b,j] (zbar[k+1][b,i] - beta_j eps_a[j,b,i])  (when e_sum is not NULL)
 * psi [K+1, B, n] and zbar [K+1, B, p] hold the step before the chunk at index
 * 0; signal [K, B, n]; active [K] (1: the step has a learning signal); ebar
 * [n, B, p], eps_a [n_alif, B, p], beta [n_alif], grad and e_sum [n, p].
 * The loops run j, then k, then b: a neuron's B trace rows stay in cache for
 * the K steps, so each trace crosses the memory bus once per chunk instead of
 * once per step, while every sum is added in the order of K single steps. */
#define EPROP_TRACES(NAME, REAL)                                                    \
static WIDE void NAME##_row(int64_t p, REAL ps, REAL kappa, const REAL *zn,         \
                            REAL *restrict e, REAL pp, REAL decay, REAL pb,         \
                            const REAL *zo, REAL *restrict ea,                      \
                            REAL l, REAL *restrict g, REAL *restrict es)            \
{                                                                                   \
    /* the gradient sum rides in the trace loop: one pass over the row */           \
    if (ea && g) {                                                                  \
        for (int64_t i = 0; i < p; ++i) {                                           \
            const REAL a = ea[i] * decay + pp * zo[i];                              \
            const REAL en = (e[i] * kappa + ps * zn[i]) - pb * a;                   \
            ea[i] = a;                                                              \
            e[i] = en;                                                              \
            g[i] += en * l;                                                         \
        }                                                                           \
    } else if (ea) {                                                                \
        for (int64_t i = 0; i < p; ++i) {                                           \
            const REAL a = ea[i] * decay + pp * zo[i];                              \
            ea[i] = a;                                                              \
            e[i] = (e[i] * kappa + ps * zn[i]) - pb * a;                            \
        }                                                                           \
    } else if (g) {                                                                 \
        for (int64_t i = 0; i < p; ++i) {                                           \
            const REAL en = e[i] * kappa + ps * zn[i];                              \
            e[i] = en;                                                              \
            g[i] += en * l;                                                         \
        }                                                                           \
    } else {                                                                        \
        for (int64_t i = 0; i < p; ++i) e[i] = e[i] * kappa + ps * zn[i];           \
    }                                                                               \
    if (es) {                                                                       \
        if (ea)                                                                     \
            for (int64_t i = 0; i < p; ++i) es[i] += ps * zn[i] - pb * ea[i];       \
        else                                                                        \
            for (int64_t i = 0; i < p; ++i) es[i] += ps * zn[i];                    \
    }                                                                               \
}                                                                                   \
                                                                                    \
void NAME(int64_t n_chunk, int64_t n, int64_t batch, int64_t p, int64_t n_alif,    \
          const REAL *psi, const REAL *zbar, const REAL *beta, REAL rho,            \
          REAL kappa, REAL *ebar, REAL *eps_a, const REAL *signal,                  \
          const uint8_t *active, REAL *grad, REAL *e_sum)                           \
{                                                                                   \
    const int64_t first = n - n_alif;                                               \
    for (int64_t j = 0; j < n; ++j) {                                               \
        REAL *es = e_sum ? e_sum + j * p : NULL;                                    \
        for (int64_t k = 0; k < n_chunk; ++k) {                                     \
            const REAL *ps_k = psi + (k + 1) * batch * n, *pp_k = psi + k * batch * n; \
            const REAL *zn_k = zbar + (k + 1) * batch * p, *zo_k = zbar + k * batch * p; \
            REAL *g = active[k] ? grad + j * p : NULL;                              \
            for (int64_t b = 0; b < batch; ++b) {                                   \
                const REAL ps = ps_k[b * n + j];                                    \
                const REAL l = g ? signal[(k * batch + b) * n + j] : 0;             \
                REAL *e = ebar + (j * batch + b) * p;                               \
                if (j >= first) {                                                   \
                    const REAL bj = beta[j - first], pp = pp_k[b * n + j];          \
                    NAME##_row(p, ps, kappa, zn_k + b * p, e, pp, rho - bj * pp,    \
                               ps * bj, zo_k + b * p,                               \
                               eps_a + ((j - first) * batch + b) * p, l, g, es);    \
                } else {                                                            \
                    NAME##_row(p, ps, kappa, zn_k + b * p, e, 0, 0, 0, NULL, NULL,  \
                               l, g, es);                                           \
                }                                                                   \
            }                                                                       \
        }                                                                           \
    }                                                                               \
}

EPROP_TRACES(eprop_traces_f64, double)
EPROP_TRACES(eprop_traces_f32, float)

/* e-prop's trace pass on a helper thread.  eprop_traces_start hands one pass
 * (the arguments of eprop_traces_f64/f32, chosen by f64) to a thread of this
 * library and returns at once; eprop_traces_wait returns when it is done.  The
 * simulation stages the next chunk meanwhile: the pass does not feed back
 * into the forward step, so the two share two cores.  The thread is plain C,
 * started on first use: it needs no Python lock to begin a pass, where a
 * Python thread waits for the interpreter's switch interval (5 ms, half a
 * chunk).  One pass at a time: a start waits for the pass before it. */
struct eprop_job {
    int f64;
    int64_t n_chunk, n, batch, p, n_alif;
    const void *psi, *zbar, *beta;
    double rho, kappa;
    void *ebar, *eps_a;
    const void *signal;
    const uint8_t *active;
    void *grad, *e_sum;
};

static pthread_mutex_t helper_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t helper_wake = PTHREAD_COND_INITIALIZER;
static int helper_started = 0, fork_handler_set = 0, job_pending = 0;
static struct eprop_job job;

static void eprop_job_run(const struct eprop_job *j)
{
    if (j->f64)
        eprop_traces_f64(j->n_chunk, j->n, j->batch, j->p, j->n_alif, j->psi, j->zbar, j->beta,
                         j->rho, j->kappa, j->ebar, j->eps_a, j->signal, j->active, j->grad, j->e_sum);
    else
        eprop_traces_f32(j->n_chunk, j->n, j->batch, j->p, j->n_alif, j->psi, j->zbar, j->beta,
                         (float)j->rho, (float)j->kappa, j->ebar, j->eps_a, j->signal, j->active,
                         j->grad, j->e_sum);
}

static void *helper_main(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&helper_lock);
    for (;;) {
        while (!job_pending) pthread_cond_wait(&helper_wake, &helper_lock);
        const struct eprop_job mine = job;
        pthread_mutex_unlock(&helper_lock);
        eprop_job_run(&mine);
        pthread_mutex_lock(&helper_lock);
        job_pending = 0;
        pthread_cond_broadcast(&helper_wake);
    }
    return NULL;
}

/* a forked child has no helper thread (only the forking thread survives a fork) */
static void helper_forget(void)
{
    pthread_mutex_init(&helper_lock, NULL);
    pthread_cond_init(&helper_wake, NULL);
    helper_started = 0;
    job_pending = 0;
}

/* 0 when the pass is started, else pthread_create's error (nothing started) */
int eprop_traces_start(int f64, int64_t n_chunk, int64_t n, int64_t batch, int64_t p, int64_t n_alif,
                       const void *psi, const void *zbar, const void *beta, double rho,
                       double kappa, void *ebar, void *eps_a, const void *signal,
                       const uint8_t *active, void *grad, void *e_sum)
{
    pthread_mutex_lock(&helper_lock);
    if (!helper_started) {
        pthread_t thread;
        const int failed = pthread_create(&thread, NULL, helper_main, NULL);
        if (failed) {
            pthread_mutex_unlock(&helper_lock);
            return failed;
        }
        pthread_detach(thread);
        if (!fork_handler_set) pthread_atfork(NULL, NULL, helper_forget);
        fork_handler_set = helper_started = 1;
    }
    while (job_pending) pthread_cond_wait(&helper_wake, &helper_lock);
    job = (struct eprop_job){f64, n_chunk, n, batch, p, n_alif, psi, zbar, beta, rho, kappa,
                             ebar, eps_a, signal, active, grad, e_sum};
    job_pending = 1;
    pthread_cond_broadcast(&helper_wake);
    pthread_mutex_unlock(&helper_lock);
    return 0;
}

void eprop_traces_wait(void)
{
    pthread_mutex_lock(&helper_lock);
    while (job_pending) pthread_cond_wait(&helper_wake, &helper_lock);
    pthread_mutex_unlock(&helper_lock);
}
