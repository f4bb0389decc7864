"""Flow-matching samplers (wan2.1.md §5): official σ schedule with shift,
Euler, and UniPC bh2 (order 2, predict x0, lower_order_final)."""
import numpy as np
import torch


def sigma_schedule(steps, shift):
    """σ_0..σ_N (float32, σ_N = 0) and integer timesteps t_i = trunc(1000 σ_i) (float64 math)."""
    sigma_max = float(np.float32(1.0 - 0.001))
    base = np.linspace(sigma_max, 0.0, steps + 1)[:-1]
    sig = shift * base / (1.0 + (shift - 1.0) * base)
    timesteps = (sig * 1000.0).astype(np.int64)
    sigmas = np.append(sig, 0.0).astype(np.float32)
    return sigmas, timesteps


def euler_sample(model_fn, x, sigmas, timesteps):
    """x_{i+1} = x_i + (σ_{i+1} - σ_i) v(x_i, t_i)."""
    traj = []
    for i in range(len(timesteps)):
        v = model_fn(x, float(timesteps[i]), float(sigmas[i]))
        x = x + (float(sigmas[i + 1]) - float(sigmas[i])) * v
        traj.append(x)
    return x, traj


def unipc_sample(model_fn, x, sigmas, timesteps):
    """UniPC bh2 as the official FlowUniPCMultistepScheduler at defaults.

    Scalar coefficients are float32 like the reference; returns the final
    latent and the trajectory (the state after each step)."""
    n = len(timesteps)
    f32 = np.float32
    sig = [f32(s) for s in sigmas]

    def lam(i):
        s = sig[i]
        if s == 0:
            return f32(np.inf)
        return f32(np.log(f32(1.0) - s) - np.log(s))

    ms = []  # x0 predictions m_i
    last_sample = None
    this_order = 1
    lower_order_nums = 0
    traj = []
    for i in range(n):
        v = model_fn(x, float(timesteps[i]), float(sigmas[i]))
        m = x - float(sig[i]) * v
        if i > 0:  # corrector (UniC) with the order of the previous step
            h = lam(i) - lam(i - 1)
            phi = f32(np.expm1(-h))
            bcoef = phi
            d_t = m - ms[-1]
            alpha_i = f32(1.0) - sig[i]
            if this_order == 1:
                x = (float(sig[i] / sig[i - 1]) * last_sample - float(alpha_i * phi) * ms[-1]
                     - float(alpha_i * bcoef * f32(0.5)) * d_t)
            else:
                r = f32((lam(i - 2) - lam(i - 1)) / h)
                d1 = (ms[-2] - ms[-1]) / float(r)
                hh = f32(-h)
                b1 = f32((phi / hh - 1) / bcoef)
                b2 = f32(2 * ((phi / hh - 1) / hh - f32(0.5)) / bcoef)
                a_mat = np.array([[1.0, 1.0], [r, 1.0]], dtype=np.float32)
                rho = np.linalg.solve(a_mat, np.array([b1, b2], dtype=np.float32)).astype(np.float32)
                x = (float(sig[i] / sig[i - 1]) * last_sample - float(alpha_i * phi) * ms[-1]
                     - float(alpha_i * bcoef) * (float(rho[0]) * d1 + float(rho[1]) * d_t))
        ms.append(m)
        ms = ms[-2:]
        this_order = min(2, n - i, lower_order_nums + 1)
        last_sample = x
        # predictor (UniP)
        if sig[i + 1] == 0:
            x = ms[-1].clone()  # λ = +inf, φ = -1: x_{i+1} = m_i
        else:
            h = lam(i + 1) - lam(i)
            phi = f32(np.expm1(-h))
            alpha_n = f32(1.0) - sig[i + 1]
            x_new = float(sig[i + 1] / sig[i]) * x - float(alpha_n * phi) * ms[-1]
            if this_order == 2:
                r = f32((lam(i - 1) - lam(i)) / h)
                d1 = (ms[-2] - ms[-1]) / float(r)
                x_new = x_new - float(alpha_n * phi * f32(0.5)) * d1
            x = x_new
        lower_order_nums = min(lower_order_nums + 1, 2)
        traj.append(x)
    return x, traj


def sample(model_fn, x, steps, shift, sampler):
    sigmas, timesteps = sigma_schedule(steps, shift)
    if sampler == "euler":
        return euler_sample(model_fn, x, sigmas, timesteps)
    if sampler == "unipc":
        return unipc_sample(model_fn, x, sigmas, timesteps)
    raise ValueError(f"unknown sampler '{sampler}'")
