"""The Triton kernels behind :mod:`creditlab.models.fused_triton` (imported on first use).

Kept apart so that ``import creditlab`` neither imports Triton nor decides
at import time whether kernels are compiled or interpreted: Triton reads
``TRITON_INTERPRET`` when a kernel is defined.
"""
import triton
import triton.language as tl


@triton.jit
def lif_forward(drive, recurrent, spikes, scaled, free, v_ptr, a_ptr, refr_ptr, z_ptr, beta_ptr, consts,
                n_steps, lanes, n_units, n_refractory,
                HAS_RECURRENT: tl.constexpr, ADAPTIVE: tl.constexpr, REFRACTORY: tl.constexpr,
                BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < lanes
    alpha = tl.load(consts)
    rho = tl.load(consts + 1)
    v_th = tl.load(consts + 2)
    v = tl.load(v_ptr + offs, mask=mask, other=0.0)
    a = tl.load(a_ptr + offs, mask=mask, other=0.0)
    z = tl.load(z_ptr + offs, mask=mask, other=0.0)
    refr = tl.load(refr_ptr + offs, mask=mask, other=0)
    if ADAPTIVE:
        beta = tl.load(beta_ptr + offs % n_units, mask=mask, other=0.0)
    p_drive = drive + offs
    p_spikes = spikes + offs
    p_scaled = scaled + offs
    p_free = free + offs
    for _ in range(n_steps):
        c = tl.load(p_drive, mask=mask, other=0.0)
        if HAS_RECURRENT:      # c = z^{t−1} W_recᵀ + I^t, the product computed by the caller
            c = tl.load(recurrent + offs, mask=mask, other=0.0) + c
        # v = (α v + c) − v_th z^{t−1};  a = ρ a + z^{t−1};  s = (v − v_th − β a) / v_th
        v = v * alpha + c
        v = v - z * v_th
        a = a * rho + z
        s = v - v_th
        if ADAPTIVE:
            s = s - beta * a
        s = tl.math.fdiv(s, v_th, ieee_rounding=True)
        z = tl.where(s > 0, 1.0, 0.0).to(v.dtype)
        if REFRACTORY:
            is_free = refr == 0
            z = tl.where(is_free, z, 0.0).to(v.dtype)
            refr = tl.where(z > 0, n_refractory - 1, tl.maximum(refr - 1, 0))
            tl.store(p_free, is_free.to(tl.uint8), mask=mask)
        tl.store(p_spikes, z, mask=mask)
        tl.store(p_scaled, s, mask=mask)
        p_drive += lanes
        p_spikes += lanes
        p_scaled += lanes
        p_free += lanes
    tl.store(v_ptr + offs, v, mask=mask)
    tl.store(a_ptr + offs, a, mask=mask)
    tl.store(refr_ptr + offs, refr, mask=mask)

@triton.jit
def pseudo(s, p1, p2, SURROGATE: tl.constexpr):
    """ψ(s) in Surrogate.pseudo's operation order (p1, p2 from :func:`_constants`)."""
    if SURROGATE == 0:       # fast sigmoid: 1 / (1 + slope |s|)²
        d = 1.0 + p1 * tl.abs(s)
        # the numerator in d's dtype: fdiv takes operands of one type (a literal 1.0 is float32)
        psi = tl.math.fdiv(tl.zeros_like(d) + 1.0, d * d, ieee_rounding=True)
    elif SURROGATE == 1:     # triangle: γ max(0, 1 − slope |s|) slope
        psi = p2 * tl.maximum(1.0 - p1 * tl.abs(s), 0.0) * p1
    else:                    # arctan: (slope / 2) / (1 + (π/2 slope s)²)
        u = p1 * s
        psi = tl.math.fdiv(p2, 1.0 + u * u, ieee_rounding=True)
    return psi

@triton.jit
def lif_backward(scaled, free, g_spikes, g_current, g_v_ptr, g_a_ptr, g_z_ptr, beta_ptr, consts,
                 n_steps, lanes, n_units,
                 ADAPTIVE: tl.constexpr, REFRACTORY: tl.constexpr, TRACK_A: tl.constexpr,
                 SURROGATE: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < lanes
    alpha = tl.load(consts)
    rho = tl.load(consts + 1)
    v_th = tl.load(consts + 2)
    p1 = tl.load(consts + 3)
    p2 = tl.load(consts + 4)
    g_v = tl.load(g_v_ptr + offs, mask=mask, other=0.0)
    g_a = tl.load(g_a_ptr + offs, mask=mask, other=0.0)
    g_z = tl.load(g_z_ptr + offs, mask=mask, other=0.0)
    if ADAPTIVE:
        beta = tl.load(beta_ptr + offs % n_units, mask=mask, other=0.0)
    p_scaled = scaled + offs
    p_free = free + offs
    p_g_spikes = g_spikes + offs
    p_g_current = g_current + offs
    for _ in range(n_steps):
        s = tl.load(p_scaled, mask=mask, other=0.0)
        psi = tl.math.fdiv(pseudo(s, p1, p2, SURROGATE), v_th, ieee_rounding=True)
        if REFRACTORY:
            psi = psi * tl.load(p_free, mask=mask, other=0).to(s.dtype)
        g_s = (g_z + tl.load(p_g_spikes, mask=mask, other=0.0)) * psi
        g_vt = g_v + g_s
        tl.store(p_g_current, g_vt, mask=mask)
        if ADAPTIVE:
            g_a = g_a - beta * g_s
        # ∂L/∂z^{t−1} through step t: the reset and the adaptation input (the recurrent
        # input is added by the caller's addmm)
        g_z = g_vt * (-v_th)
        if TRACK_A:
            g_z = g_z + g_a
            g_a = g_a * rho
        g_v = g_vt * alpha
        p_scaled -= lanes
        p_free -= lanes
        p_g_spikes -= lanes
        p_g_current -= lanes
    tl.store(g_v_ptr + offs, g_v, mask=mask)
    tl.store(g_a_ptr + offs, g_a, mask=mask)
    tl.store(g_z_ptr + offs, g_z, mask=mask)


@triton.jit
def eprop_traces(psi, zbar, beta, consts, ebar, eps_a, signal, active, grad, e_sum,
                 n_chunk, n, batch, p, first,
                 HAS_E_SUM: tl.constexpr, BLOCK: tl.constexpr):
    """A chunk of e-prop steps for postsynaptic neuron j = program 0 and a block of presynaptic
    i: the loops over steps and batch of ``eprop_traces`` in creditlab/native/loops.c, term for term."""
    j = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < p
    rho = tl.load(consts)
    kappa = tl.load(consts + 1)
    row = j * p + cols
    g = tl.load(grad + row, mask=mask, other=0.0)
    if HAS_E_SUM:
        es = tl.load(e_sum + row, mask=mask, other=0.0)
    adaptive = j >= first
    for k in range(n_chunk):
        has_signal = tl.load(active + k) != 0
        for b in range(batch):
            ps = tl.load(psi + ((k + 1) * batch + b) * n + j)
            zn = tl.load(zbar + ((k + 1) * batch + b) * p + cols, mask=mask, other=0.0)
            p_e = ebar + (j * batch + b) * p + cols
            e = tl.load(p_e, mask=mask, other=0.0)
            if adaptive:
                bj = tl.load(beta + (j - first))
                pp = tl.load(psi + (k * batch + b) * n + j)
                p_a = eps_a + ((j - first) * batch + b) * p + cols
                a = tl.load(p_a, mask=mask, other=0.0) * (rho - bj * pp) \
                    + pp * tl.load(zbar + (k * batch + b) * p + cols, mask=mask, other=0.0)
                tl.store(p_a, a, mask=mask)
                pb = ps * bj
                e = (e * kappa + ps * zn) - pb * a
                direct = ps * zn - pb * a
            else:
                e = e * kappa + ps * zn
                direct = ps * zn
            tl.store(p_e, e, mask=mask)
            if HAS_E_SUM:
                es += direct
            if has_signal:
                g += e * tl.load(signal + (k * batch + b) * n + j)
    tl.store(grad + row, g, mask=mask)
    if HAS_E_SUM:
        tl.store(e_sum + row, es, mask=mask)


@triton.jit
def cuba_run(vg_ptr, free_ptr, acc_ptr, spiked_ptr, targets_ptr, weights_ptr, consts, counts_ptr,
             record_ptr, slot_ptr, n_steps, t0, batch, n, fan_out, n_refractory, n_recorded,
             RECORD: tl.constexpr, BLOCK: tl.constexpr, K_BLOCK: tl.constexpr):
    # one program per trial: its n neurons stay in registers for the whole run
    b = tl.program_id(0).to(tl.int64)
    j = tl.arange(0, BLOCK)
    m = j < n
    state = vg_ptr + b * 3 * n
    ge = tl.load(state + j, mask=m, other=0.0)
    gi = tl.load(state + n + j, mask=m, other=0.0)
    v = tl.load(state + 2 * n + j, mask=m, other=0.0)
    free_at = tl.load(free_ptr + b * n + j, mask=m, other=0)
    p0 = tl.load(consts)
    p1 = tl.load(consts + 1)
    p2 = tl.load(consts + 2)
    p3 = tl.load(consts + 3)
    p4 = tl.load(consts + 4)
    p5 = tl.load(consts + 5)
    p6 = tl.load(consts + 6)
    p7 = tl.load(consts + 7)
    p8 = tl.load(consts + 8)
    o0 = tl.load(consts + 9)
    o1 = tl.load(consts + 10)
    o2 = tl.load(consts + 11)
    v_th = tl.load(consts + 12)
    v_reset = tl.load(consts + 13)
    k = tl.arange(0, K_BLOCK)
    in_row = k < fan_out
    acc = acc_ptr + b * 2 * n
    spiked = spiked_ptr + b * n
    if RECORD:
        slot = tl.load(slot_ptr + b)
    for t in range(n_steps):
        step = t0 + t
        e = ge
        i = gi
        u = v
        # the propagator row by row, summed left to right as the compiled CPU loop sums it
        ge = o0 + p0 * e + p1 * i + p2 * u
        gi = o1 + p3 * e + p4 * i + p5 * u
        v = o2 + p6 * e + p7 * i + p8 * u
        v = tl.where(free_at > step, v_reset, v)
        z = (v > v_th) & m
        zi = z.to(tl.int32)
        count = tl.sum(zi, axis=0)
        if count > 0:
            # the spiking neurons' indices, compacted in ascending order, for a loop over events; the
            # currents go to the trial's buffer, where the spikes' weights are added in place
            tl.store(spiked + tl.cumsum(zi, axis=0) - 1, j, mask=z)
            tl.store(acc + j, ge, mask=m)
            tl.store(acc + n + j, gi, mask=m)
            tl.debug_barrier()
            # rows are read-only, so reading them runs ahead of the additions: spike s + 1's row and
            # spike s + 2's index are requested before spike s adds
            first = tl.load(spiked, cache_modifier=".cg").to(tl.int64)
            w = tl.load(weights_ptr + first * fan_out + k, mask=in_row, other=0.0)
            target = tl.load(targets_ptr + first * fan_out + k, mask=in_row, other=0)
            ahead = tl.load(spiked + tl.minimum(1, count - 1), cache_modifier=".cg").to(tl.int64)
            for s in range(count):
                w_next = tl.load(weights_ptr + ahead * fan_out + k, mask=in_row, other=0.0)
                target_next = tl.load(targets_ptr + ahead * fan_out + k, mask=in_row, other=0)
                ahead = tl.load(spiked + tl.minimum(s + 2, count - 1), cache_modifier=".cg").to(tl.int64)
                # a row's targets are distinct, so each lane owns its current for this spike; padding
                # (target 0, weight 0) is left out, adding 0 changes nothing.  One spike at a time, in
                # ascending order of the presynaptic neuron: the CPU loop's sums exactly.  ".cg" reads
                # L2, where the other threads' stores are, not a stale L1 line
                real = in_row & (w != 0.0)
                current = tl.load(acc + target, mask=real, other=0.0, cache_modifier=".cg")
                tl.store(acc + target, current + w, mask=real)
                tl.debug_barrier()
                w = w_next
                target = target_next
            ge = tl.load(acc + j, mask=m, other=0.0, cache_modifier=".cg")
            gi = tl.load(acc + n + j, mask=m, other=0.0, cache_modifier=".cg")
            v = tl.where(z, v_reset, v)
            free_at = tl.where(z, step + n_refractory, free_at)
        tl.store(counts_ptr + t * batch + b, count.to(counts_ptr.dtype.element_ty))
        if RECORD:
            if slot >= 0:
                tl.store(record_ptr + (t * n_recorded + slot) * n + j, zi.to(tl.uint8), mask=m)
    tl.store(state + j, ge, mask=m)
    tl.store(state + n + j, gi, mask=m)
    tl.store(state + 2 * n + j, v, mask=m)
    tl.store(free_ptr + b * n + j, free_at, mask=m)
