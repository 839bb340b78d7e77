//! Vectorised CPU kernels for the fast training path: bias + SiLU forward and its backward,
//! with a branch-free `exp` that the compiler vectorises.
//!
//! `SiLU(z) = z σ(z)`, `σ(z) = 1/(1 + e^{−z})`, `SiLU'(z) = σ(z)(1 + z(1 − σ(z)))`.
//!
//! Users do not set `RUSTFLAGS`, so each kernel is compiled twice by tsm-core's
//! `multiversion!` (AVX2 enabled, and the baseline target) and the AVX2 copy is chosen at run
//! time. Both copies run the same IEEE operations in the same order (Rust never contracts
//! `a * b + c` into an FMA on its own), so they give the same bits (tested).
//!
//! Private to the crate: an implementation detail of [`crate::engine::CpuEngine`] and
//! [`crate::mmd`].

/// `e^x` in `f32`, relative error < 2e-7 on `[−87, 88]` (clamped outside).
///
/// `x = k ln 2 + r`, `|r| ≤ ln 2 / 2`; `e^r` by a degree-6 Taylor polynomial; `2^k` by writing
/// the exponent bits. The rounding uses the `1.5·2²³` trick, so no float→int cast appears.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + MAGIC;
    let k = shifted - MAGIC;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // Low bits of `shifted` hold k (two's complement); move k + 127 into the exponent.
    let kbits = shifted.to_bits().wrapping_sub(0x4B40_0000);
    let scale = f32::from_bits(kbits.wrapping_add(127) << 23);
    p * scale
}

#[inline(always)]
fn bias_silu_body(z: &mut [f32], bias: &[f32], a: &mut [f32], sig: &mut [f32]) {
    let h = bias.len();
    for ((zr, ar), sr) in z
        .chunks_exact_mut(h)
        .zip(a.chunks_exact_mut(h))
        .zip(sig.chunks_exact_mut(h))
    {
        for ((((zv, av), sv), &b), _) in zr
            .iter_mut()
            .zip(ar.iter_mut())
            .zip(sr.iter_mut())
            .zip(bias)
            .zip(0..h)
        {
            let zz = *zv + b;
            let s = 1.0 / (1.0 + exp_f32(-zz));
            *zv = zz;
            *sv = s;
            *av = zz * s;
        }
    }
}

#[inline(always)]
fn silu_backward_body(da: &[f32], z: &[f32], sig: &[f32], dz: &mut [f32], db: &mut [f32]) {
    let h = db.len();
    for (((dar, zr), sr), dzr) in da
        .chunks_exact(h)
        .zip(z.chunks_exact(h))
        .zip(sig.chunks_exact(h))
        .zip(dz.chunks_exact_mut(h))
    {
        for ((((&g, &zz), &s), o), b) in dar
            .iter()
            .zip(zr)
            .zip(sr)
            .zip(dzr.iter_mut())
            .zip(db.iter_mut())
        {
            let v = g * s * (1.0 + zz * (1.0 - s));
            *o = v;
            *b += v;
        }
    }
}

tsm_core::multiversion! {
    /// Row-wise `z += bias`, then `sig = σ(z)`, `a = z σ(z)` (`z, a, sig: [n, h]`, `bias: [h]`).
    pub fn bias_silu(z: &mut [f32], bias: &[f32], a: &mut [f32], sig: &mut [f32])
        => bias_silu_checked
}

tsm_core::multiversion! {
    /// `dz = da ⊙ SiLU'(z)` with `SiLU'(z) = σ(1 + z(1 − σ))`, and `db += Σ_rows dz`.
    pub fn silu_backward(da: &[f32], z: &[f32], sig: &[f32], dz: &mut [f32], db: &mut [f32])
        => silu_backward_checked
}

#[inline(always)]
fn bias_silu_checked(z: &mut [f32], bias: &[f32], a: &mut [f32], sig: &mut [f32]) {
    debug_assert!(z.len() == a.len() && a.len() == sig.len() && z.len() % bias.len() == 0);
    bias_silu_body(z, bias, a, sig)
}

#[inline(always)]
fn silu_backward_checked(da: &[f32], z: &[f32], sig: &[f32], dz: &mut [f32], db: &mut [f32]) {
    debug_assert!(da.len() == z.len() && z.len() == dz.len() && da.len() % db.len() == 0);
    silu_backward_body(da, z, sig, dz, db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatched_and_portable_kernels_agree_bit_for_bit() {
        // The AVX2 copy (chosen at run time where the CPU has it) against the portable body.
        let (n, h) = (37, 13);
        let wave = |k: usize, f: f32| (0..k).map(|i| (i as f32 * f).sin() * 6.0).collect();
        let z0: Vec<f32> = wave(n * h, 0.37);
        let bias: Vec<f32> = wave(h, 1.3);
        let (mut z1, mut a1, mut s1) = (z0.clone(), vec![0.0; n * h], vec![0.0; n * h]);
        let (mut z2, mut a2, mut s2) = (z0.clone(), vec![0.0; n * h], vec![0.0; n * h]);
        bias_silu(&mut z1, &bias, &mut a1, &mut s1);
        bias_silu_body(&mut z2, &bias, &mut a2, &mut s2);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&z1), bits(&z2));
        assert_eq!(bits(&a1), bits(&a2));
        assert_eq!(bits(&s1), bits(&s2));
        let da: Vec<f32> = wave(n * h, 0.11);
        let (mut dz1, mut db1) = (vec![0.0; n * h], vec![0.5; h]);
        let (mut dz2, mut db2) = (vec![0.0; n * h], vec![0.5; h]);
        silu_backward(&da, &z1, &s1, &mut dz1, &mut db1);
        silu_backward_body(&da, &z2, &s2, &mut dz2, &mut db2);
        assert_eq!(bits(&dz1), bits(&dz2));
        assert_eq!(bits(&db1), bits(&db2));
    }

    #[test]
    fn exp_is_accurate() {
        let mut worst: f32 = 0.0;
        for i in -8700..8800 {
            let x = i as f32 * 0.01;
            let rel = (exp_f32(x) - x.exp()).abs() / x.exp();
            worst = worst.max(rel);
        }
        assert!(worst < 5e-7, "{worst}");
        assert!(exp_f32(-1000.0) > 0.0 && exp_f32(1000.0).is_finite());
    }

    #[test]
    fn silu_backward_matches_finite_differences() {
        let zs = [-9.0f32, -2.0, -0.3, 0.0, 0.4, 1.5, 7.0];
        for &z0 in &zs {
            let f = |z: f32| z as f64 / (1.0 + (-(z as f64)).exp());
            let h = 1e-3f32;
            let fd = (f(z0 + h) - f(z0 - h)) / (2.0 * h as f64);
            let (mut z, mut a, mut s) = ([z0], [0.0], [0.0]);
            bias_silu(&mut z, &[0.0], &mut a, &mut s);
            assert!((a[0] as f64 - f(z0)).abs() < 1e-6);
            let (mut dz, mut db) = ([0.0], [0.0]);
            silu_backward(&[1.0], &z, &s, &mut dz, &mut db);
            assert!((dz[0] as f64 - fd).abs() < 1e-3, "{z0}: {} vs {fd}", dz[0]);
            assert_eq!(db[0], dz[0]);
        }
    }
}
