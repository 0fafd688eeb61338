/* Time of e-prop's ALIF trace pass per step on this CPU (benchmarks/notes.md, target (c)).
 *
 * Runs eprop_traces_f32 of creditlab/native/loops.c on the online-memory
 * benchmark's ALIF shape (256 neurons, the last 128 adaptive, batch 32, 276
 * presynaptic inputs, chunks of 16 steps, every step with a learning signal)
 * and prints the best of 40 chunks per step.  Built twice, it tells whether
 * the pass is bound by arithmetic: as creditlab builds it (strict IEEE, AVX2
 * clone) and with fused multiply-adds allowed (AVX2 + FMA, contraction on).
 *
 *   cc -D_POSIX_C_SOURCE=200809L -O3 -std=c99 -ffp-contract=off -o /tmp/eprop_strict \
 *      benchmarks/floor/eprop_pass_floor.c creditlab/native/loops.c -lm && /tmp/eprop_strict
 *   cc -D_POSIX_C_SOURCE=200809L -O3 -std=c99 -ffp-contract=fast \
 *      '-DWIDE=__attribute__((target("avx2,fma")))' -o /tmp/eprop_fma \
 *      benchmarks/floor/eprop_pass_floor.c creditlab/native/loops.c -lm && /tmp/eprop_fma
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CHUNK 16
#define NEURONS 256
#define ADAPTIVE 128
#define BATCH 32
#define INPUTS 276
#define REPEATS 40

void eprop_traces_f32(int64_t n_chunk, int64_t n, int64_t batch, int64_t p, int64_t n_alif,
                      const float *psi, const float *zbar, const float *beta, float rho,
                      float kappa, float *ebar, float *eps_a, const float *signal,
                      const uint8_t *active, float *grad, float *e_sum);

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static float *uniform(size_t count, float scale)
{
    float *x = malloc(count * sizeof *x);
    for (size_t i = 0; i < count; ++i) x[i] = scale * (float)rand() / (float)RAND_MAX;
    return x;
}

int main(void)
{
    float *psi = uniform((CHUNK + 1) * BATCH * NEURONS, 0.3f);
    float *zbar = uniform((CHUNK + 1) * BATCH * INPUTS, 1.0f);
    float *beta = uniform(ADAPTIVE, 1.7f);
    float *ebar = uniform((size_t)NEURONS * BATCH * INPUTS, 0.1f);
    float *eps_a = uniform((size_t)ADAPTIVE * BATCH * INPUTS, 0.1f);
    float *signal = uniform(CHUNK * BATCH * NEURONS, 0.01f);
    float *grad = uniform(NEURONS * INPUTS, 0.0f);
    uint8_t active[CHUNK];
    for (int k = 0; k < CHUNK; ++k) active[k] = 1;
    double best = 1e30;
    for (int r = 0; r < REPEATS; ++r) {
        const double start = now();
        eprop_traces_f32(CHUNK, NEURONS, BATCH, INPUTS, ADAPTIVE, psi, zbar, beta, 0.99f, 0.95f,
                         ebar, eps_a, signal, active, grad, NULL);
        const double seconds = now() - start;
        if (seconds < best) best = seconds;
    }
    double checksum = 0;
    for (int i = 0; i < NEURONS * INPUTS; ++i) checksum += grad[i];
    printf("trace pass: %.3f ms per step (best of %d chunks of %d; gradient sum %.6g)\n",
           best / CHUNK * 1e3, REPEATS, CHUNK, checksum);
    return 0;
}
