/* Cost floor of one echo-state step on this CPU (benchmarks/notes.md, target (e)).
 *
 * A 500-unit reservoir with 10 % connectivity (the Mackey-Glass benchmark's
 * shape), float32, AVX2, 5 000 steps, strict IEEE as creditlab's loops are
 * built.  Times per step, three repetitions:
 *   - the product W h alone, as CSR with eight partial sums (gathers), as a
 *     dense row-major product and as a dense column (axpy) product;
 *   - a whole step h <- 0.7 h + 0.3 tanh(c + W h), in the form of
 *     creditlab/native/loops.c (four partial sums, libm tanhf) and with eight
 *     partial sums and a vectorisable rational tanh (|error| vs tanhf printed).
 *
 *   cc -D_POSIX_C_SOURCE=200809L -O3 -std=c99 -ffp-contract=off \
 *      -o /tmp/esn_step_floor benchmarks/floor/esn_step_floor.c -lm && /tmp/esn_step_floor
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define N 500
#define T 5000

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* minimax rational tanh for float (clamped where tanhf rounds to +-1) */
static inline float tanh_rational(float x)
{
    const float c = 7.90531110763549805f;
    x = x < -c ? -c : (x > c ? c : x);
    const float x2 = x * x;
    float p = -2.76076847742355e-16f;
    p = p * x2 + 2.00018790482477e-13f;
    p = p * x2 + -8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = p * x2 + 4.89352455891786e-03f;
    p = x * p;
    float q = 1.19825839466702e-06f;
    q = q * x2 + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    return p / q;
}

__attribute__((target("avx2,fma"))) static void csr8(const int64_t *crow, const int32_t *col, const float *val,
                                                     const float *h, float *out)
{
    for (int j = 0; j < N; ++j) {
        float s[8] = {0};
        int64_t k = crow[j];
        for (; k + 7 < crow[j + 1]; k += 8)
            for (int u = 0; u < 8; ++u) s[u] += val[k + u] * h[col[k + u]];
        for (; k < crow[j + 1]; ++k) s[0] += val[k] * h[col[k]];
        out[j] = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    }
}

__attribute__((target("avx2,fma"))) static void dense_rows(const float *w, const float *h, float *out)
{
    for (int j = 0; j < N; ++j) {
        float s[8] = {0};
        const float *row = w + j * N;
        int i = 0;
        for (; i + 7 < N; i += 8)
            for (int u = 0; u < 8; ++u) s[u] += row[i + u] * h[i + u];
        for (; i < N; ++i) s[0] += row[i] * h[i];
        out[j] = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    }
}

__attribute__((target("avx2,fma"))) static void dense_columns(const float *wt, const float *h, float *out)
{
    for (int j = 0; j < N; ++j) out[j] = 0;
    for (int i = 0; i < N; ++i) {
        const float *column = wt + i * N;
        for (int j = 0; j < N; ++j) out[j] += h[i] * column[j];
    }
}

/* the step as creditlab/native/loops.c writes it (float) */
__attribute__((target("avx2,fma"))) static void step_shipped(const int64_t *crow, const int32_t *col,
                                                             const float *val, const float *prev,
                                                             const float *cur, float *h)
{
    for (int j = 0; j < N; ++j) {
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        int64_t k = crow[j];
        for (; k + 3 < crow[j + 1]; k += 4) {
            s0 += val[k] * prev[col[k]];
            s1 += val[k + 1] * prev[col[k + 1]];
            s2 += val[k + 2] * prev[col[k + 2]];
            s3 += val[k + 3] * prev[col[k + 3]];
        }
        for (; k < crow[j + 1]; ++k) s0 += val[k] * prev[col[k]];
        h[j] = 0.7f * prev[j] + 0.3f * tanhf(cur[j] + ((s0 + s1) + (s2 + s3)));
    }
}

__attribute__((target("avx2,fma"))) static void step_rational(const int64_t *crow, const int32_t *col,
                                                              const float *val, const float *prev,
                                                              const float *cur, float *h)
{
    float pre[N];
    csr8(crow, col, val, prev, pre);
    for (int j = 0; j < N; ++j) h[j] = 0.7f * prev[j] + 0.3f * tanh_rational(cur[j] + pre[j]);
}

int main(void)
{
    srand(1);
    int64_t *crow = malloc((N + 1) * sizeof *crow);
    int32_t *col = malloc(N * N * sizeof *col);
    float *val = malloc(N * N * sizeof *val), *w = calloc(N * N, sizeof *w), *wt = calloc(N * N, sizeof *wt);
    int64_t nnz = 0;
    crow[0] = 0;
    for (int j = 0; j < N; ++j) {
        for (int i = 0; i < N; ++i)
            if (rand() % 10 == 0) {
                col[nnz] = i;
                val[nnz] = (rand() / (float)RAND_MAX - 0.5f) * 0.16f;
                w[j * N + i] = wt[i * N + j] = val[nnz];
                ++nnz;
            }
        crow[j + 1] = nnz;
    }
    float *cur = malloc(T * N * sizeof *cur), *a = malloc(T * N * sizeof *a), *b = malloc(T * N * sizeof *b);
    float h0[N] = {0}, h[N], out[N];
    for (int i = 0; i < T * N; ++i) cur[i] = rand() / (float)RAND_MAX - 0.5f;
    for (int i = 0; i < N; ++i) h[i] = rand() / (float)RAND_MAX - 0.5f;
    printf("reservoir %d units, %ld non-zero weights, %d steps; microseconds per step\n", N, (long)nnz, T);
    for (int rep = 0; rep < 3; ++rep) {
        double t0 = now();
        for (int t = 0; t < T; ++t) { csr8(crow, col, val, h, out); h[t % N] += out[0] * 1e-9f; }
        double t1 = now();
        for (int t = 0; t < T; ++t) { dense_rows(w, h, out); h[t % N] += out[0] * 1e-9f; }
        double t2 = now();
        for (int t = 0; t < T; ++t) { dense_columns(wt, h, out); h[t % N] += out[0] * 1e-9f; }
        double t3 = now();
        const float *prev = h0;
        for (int t = 0; t < T; ++t) { step_shipped(crow, col, val, prev, cur + t * N, a + t * N); prev = a + t * N; }
        double t4 = now();
        prev = h0;
        for (int t = 0; t < T; ++t) { step_rational(crow, col, val, prev, cur + t * N, b + t * N); prev = b + t * N; }
        double t5 = now();
        printf("W h: CSR 8 sums %.1f, dense rows %.1f, dense columns %.1f | whole step: shipped form %.1f, "
               "8 sums + rational tanh %.1f\n", (t1 - t0) / T * 1e6, (t2 - t1) / T * 1e6, (t3 - t2) / T * 1e6,
               (t4 - t3) / T * 1e6, (t5 - t4) / T * 1e6);
    }
    float worst = 0;
    for (float x = -10; x < 10; x += 1e-4f) {
        const float d = fabsf(tanh_rational(x) - tanhf(x));
        worst = d > worst ? d : worst;
    }
    printf("rational tanh: max |error| vs tanhf on [-10, 10] = %.2g\n", worst);
    return 0;
}
