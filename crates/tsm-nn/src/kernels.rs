//! Vectorised CPU kernels for the fast training path: the matrix products ([`gemm`]), and
//! bias + SiLU forward and its backward with a branch-free `exp` that the compiler vectorises.
//!
//! [`gemm`] is register-blocked for the training step's small shapes (a half-batch of 256 rows
//! against 128 × 130 weights) with run-time dispatch to AVX-512, AVX2 + FMA or a portable
//! path; every output element is the same chain of fused multiply–adds on every path, so the
//! paths give the same bits (tested, each forced in turn).
//!
//! `SiLU(z) = z σ(z)`, `σ(z) = 1/(1 + e^{−z})`, `SiLU'(z) = σ(z)(1 + z(1 − σ(z)))`.
//!
//! Users do not set `RUSTFLAGS`, so each elementwise kernel is compiled three times by
//! [`vector_dispatch!`] (AVX-512 enabled, AVX2 enabled, and the baseline target) and the
//! widest copy the CPU has is chosen at run time ([`vector_path`], which also follows
//! tsm-core's `fastmath` cap). All copies run the same IEEE operations in the same order
//! (Rust never contracts `a * b + c` into an FMA on its own), so they give the same bits
//! (tested, each forced in turn).
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

/// Defines `$name` that runs `$kernel` (an `#[inline(always)]` function of plain Rust) compiled
/// with AVX-512, with AVX2, or for the baseline target, whichever [`vector_path`] allows: the
/// same bits on every path, only wider vectors.
macro_rules! vector_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $kernel:path) => {
        $(#[$meta])*
        #[inline]
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                use $crate::kernels::{vector_path, VectorPath};
                #[target_feature(enable = "avx512f,avx2")]
                unsafe fn avx512($($arg: $ty),*) {
                    $kernel($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) {
                    $kernel($($arg),*)
                }
                match vector_path() {
                    // SAFETY: `vector_path` reports a path only where the CPU has its features.
                    VectorPath::Avx512 => return unsafe { avx512($($arg),*) },
                    VectorPath::Avx2Fma => return unsafe { avx2($($arg),*) },
                    VectorPath::Portable => {}
                }
            }
            $kernel($($arg),*)
        }
    };
}
pub(crate) use vector_dispatch;

vector_dispatch! {
    /// Row-wise `z += bias`, then `sig = σ(z)`, `a = z σ(z)` (`z, a, sig: [n, h]`, `bias: [h]`).
    pub fn bias_silu(z: &mut [f32], bias: &[f32], a: &mut [f32], sig: &mut [f32])
        => bias_silu_checked
}

vector_dispatch! {
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

/// Which vector path the CPU engine's kernels (the matrix products, bias + SiLU and its
/// backward, the time embedding) take: AVX-512, AVX2 with FMA, or the portable one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum VectorPath {
    /// Scalar `f32::mul_add` (a correctly rounded fused multiply–add, in software where the
    /// CPU has none: exact but slow).
    Portable,
    /// 256-bit vectors with fused multiply–add.
    Avx2Fma,
    /// 512-bit vectors.
    Avx512,
}

/// The highest [`VectorPath`] the dispatch may take (tests lower it to force each path).
static VECTOR_CAP: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(2);

/// The path the CPU engine's kernels take on this CPU: the widest it has, at most the cap
/// ([`cap_vector_path`]), and never above the workspace's [`tsm_core::fastmath::level`] (so
/// capping that to the portable level caps this too).
pub fn vector_path() -> VectorPath {
    let cap = VECTOR_CAP.load(std::sync::atomic::Ordering::Relaxed);
    #[cfg(target_arch = "x86_64")]
    {
        use tsm_core::fastmath::{level, Level};
        if level() >= Level::Avx2 && std::arch::is_x86_feature_detected!("fma") {
            if cap >= 2 && std::arch::is_x86_feature_detected!("avx512f") {
                return VectorPath::Avx512;
            }
            if cap >= 1 {
                return VectorPath::Avx2Fma;
            }
        }
    }
    let _ = cap;
    VectorPath::Portable
}

/// Caps the vector path of the CPU engine's kernels at `path` for the whole process, and
/// returns the previous cap. Every path computes the same bits, so this changes speed only:
/// benchmarks use it to time the AVX2 path on a machine that has AVX-512 (and tests to force
/// each path in turn). The path taken is never above what the CPU has, nor above
/// [`tsm_core::fastmath::level`].
pub fn cap_vector_path(path: VectorPath) -> VectorPath {
    let previous = VECTOR_CAP.swap(path as u8, std::sync::atomic::Ordering::Relaxed);
    match previous {
        0 => VectorPath::Portable,
        1 => VectorPath::Avx2Fma,
        _ => VectorPath::Avx512,
    }
}

/// Runs `f` with the vector paths capped at `path`, then restores the cap (calls serialised by a lock).
#[cfg(test)]
pub fn with_vector_cap<T>(path: VectorPath, f: impl FnOnce() -> T) -> T {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    struct Restore(VectorPath);
    impl Drop for Restore {
        fn drop(&mut self) {
            cap_vector_path(self.0);
        }
    }
    let _restore = Restore(cap_vector_path(path));
    f()
}

/// A strided view of the left factor: element `(i, p)` is `data[i·row + p·col]`.
#[derive(Debug, Clone, Copy)]
pub struct Lhs<'a> {
    /// The elements.
    pub data: &'a [f32],
    /// The stride between rows `i`.
    pub row: usize,
    /// The stride along the reduction index `p`.
    pub col: usize,
}

/// `C = A·B` (or `C += A·B` with `accumulate`): `C: [m, n]` row-major with row stride `ldc`,
/// `A: [m, k]` strided ([`Lhs`]), `B: [k, n]` row-major with row stride `ldb`.
///
/// Every element is one chain of fused multiply–adds over `p = 0, 1, …, k − 1` in that order,
/// starting from 0 (or from `C`), on every path and for every blocking: the AVX-512, AVX2 and
/// portable paths give the same bits (tested). Register-blocked for the training step's
/// shapes (`k` ≤ a few hundred, so the panels stay in cache without packing).
///
/// # Panics
/// When a slice is too short for the shapes (a bug in the caller).
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    n: usize,
    k: usize,
    a: Lhs<'_>,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (m - 1) * a.row + k.saturating_sub(1) * a.col < a.data.len() || k == 0,
        "gemm: A too short"
    );
    assert!(k == 0 || (k - 1) * ldb + n <= b.len(), "gemm: B too short");
    assert!((m - 1) * ldc + n <= c.len(), "gemm: C too short");
    match vector_path() {
        #[cfg(target_arch = "x86_64")]
        VectorPath::Avx512 => {
            // SAFETY: `vector_path` reports AVX-512 only where the CPU has avx512f and fma.
            unsafe { gemm_avx512(m, n, k, a, b, ldb, c, ldc, accumulate) }
        }
        #[cfg(target_arch = "x86_64")]
        VectorPath::Avx2Fma => {
            // SAFETY: `vector_path` reports AVX2+FMA only where the CPU has both.
            unsafe { gemm_avx2(m, n, k, a, b, ldb, c, ldc, accumulate) }
        }
        _ => edge(0, m, 0, n, k, a, b, ldb, c, ldc, accumulate),
    }
}

#[cfg(target_arch = "x86_64")]
use x86::{gemm_avx2, gemm_avx512};

/// The vector paths: one `MR × 2 vectors` register tile written once per instruction set by a
/// macro (the same code with 512- or 256-bit intrinsics). The accumulators stay in registers
/// over the whole reduction; each lane runs the same fused multiply–add chain as
/// [`edge`]'s scalar `mul_add`, so all paths give the same bits.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Lhs;
    use std::arch::x86_64::*;

    std::thread_local! {
        /// The zero-padded right-edge panel of `B` (reused across calls).
        static PANEL: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    macro_rules! vector_gemm {
        ($gemm:ident, $rows:ident, $tile:ident, $features:literal, $mr:literal, $lanes:literal,
         $zero:ident, $set1:ident, $load:ident, $store:ident, $fmadd:ident) => {
            /// `gemm` on this instruction set (see [`super::gemm`]).
            ///
            /// The right edge (`n mod 2·lanes` columns) runs through the same tiles on a copy
            /// of `B`'s last columns padded with zeros: the padding lanes are computed and
            /// dropped, the real ones run the same chains.
            ///
            /// # Safety
            /// The CPU must have the enabled features, and the slices must hold the shapes
            /// (checked by the caller).
            #[target_feature(enable = $features)]
            #[allow(clippy::too_many_arguments)]
            pub unsafe fn $gemm(
                m: usize,
                n: usize,
                k: usize,
                a: Lhs<'_>,
                b: &[f32],
                ldb: usize,
                c: &mut [f32],
                ldc: usize,
                accumulate: bool,
            ) {
                const NR: usize = 2 * $lanes;
                let full_cols = n - n % NR;
                let mut i = 0;
                while i < m {
                    let rows = (m - i).min($mr);
                    let sub = Lhs {
                        data: &a.data[i * a.row..],
                        ..a
                    };
                    let mut j = 0;
                    while j < full_cols {
                        // SAFETY: the rows and columns are inside the checked shapes.
                        unsafe {
                            $rows(rows, j, k, sub, b, ldb, &mut c[i * ldc..], ldc, accumulate)
                        };
                        j += NR;
                    }
                    i += rows;
                }
                let rem = n - full_cols;
                if rem == 0 {
                    return;
                }
                PANEL.with_borrow_mut(|panel| {
                    panel.clear();
                    panel.resize(k * NR, 0.0);
                    for p in 0..k {
                        panel[p * NR..p * NR + rem]
                            .copy_from_slice(&b[p * ldb + full_cols..p * ldb + n]);
                    }
                    let mut i = 0;
                    while i < m {
                        let rows = (m - i).min($mr);
                        let mut tmp = [0.0f32; $mr * NR];
                        if accumulate {
                            for r in 0..rows {
                                tmp[r * NR..r * NR + rem].copy_from_slice(
                                    &c[(i + r) * ldc + full_cols..(i + r) * ldc + n],
                                );
                            }
                        }
                        let sub = Lhs {
                            data: &a.data[i * a.row..],
                            ..a
                        };
                        // SAFETY: the panel has k rows of NR; tmp has $mr rows of NR.
                        unsafe { $rows(rows, 0, k, sub, panel, NR, &mut tmp, NR, accumulate) };
                        for r in 0..rows {
                            c[(i + r) * ldc + full_cols..(i + r) * ldc + n]
                                .copy_from_slice(&tmp[r * NR..r * NR + rem]);
                        }
                        i += rows;
                    }
                });
            }

            /// Rows `0..rows` (at most `$mr`) of `A` and `C`, columns `j..j + 2·lanes`: one
            /// full tile, or tiles of 4, 2 and 1 rows for a ragged bottom.
            #[target_feature(enable = $features)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn $rows(
                rows: usize,
                j: usize,
                k: usize,
                a: Lhs<'_>,
                b: &[f32],
                ldb: usize,
                c: &mut [f32],
                ldc: usize,
                accumulate: bool,
            ) {
                // SAFETY (every call): rows r..r+step are below `rows`, inside the shapes.
                if rows == $mr {
                    unsafe { $tile::<$mr>(0, j, k, a, b, ldb, c, ldc, accumulate) };
                    return;
                }
                let mut r = 0;
                while r < rows {
                    let step = match rows - r {
                        1 => 1,
                        2 | 3 => 2,
                        _ => 4,
                    };
                    unsafe {
                        match step {
                            1 => $tile::<1>(r, j, k, a, b, ldb, c, ldc, accumulate),
                            2 => $tile::<2>(r, j, k, a, b, ldb, c, ldc, accumulate),
                            _ => $tile::<4>(r, j, k, a, b, ldb, c, ldc, accumulate),
                        }
                    }
                    r += step;
                }
            }

            /// One `MR × 2·lanes` tile at `(i, j)`.
            #[target_feature(enable = $features)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn $tile<const MR: usize>(
                i: usize,
                j: usize,
                k: usize,
                a: Lhs<'_>,
                b: &[f32],
                ldb: usize,
                c: &mut [f32],
                ldc: usize,
                accumulate: bool,
            ) {
                let (ap, bp, cp) = (a.data.as_ptr(), b.as_ptr(), c.as_mut_ptr());
                // SAFETY (all pointer offsets below): the caller checked that A holds rows
                // i..i+MR over p < k, B rows p < k over columns j..j+2·lanes, and C the tile.
                unsafe {
                    let mut lo = [$zero(); MR];
                    let mut hi = [$zero(); MR];
                    if accumulate {
                        for r in 0..MR {
                            lo[r] = $load(cp.add((i + r) * ldc + j));
                            hi[r] = $load(cp.add((i + r) * ldc + j + $lanes));
                        }
                    }
                    for p in 0..k {
                        let b0 = $load(bp.add(p * ldb + j));
                        let b1 = $load(bp.add(p * ldb + j + $lanes));
                        for r in 0..MR {
                            let x = $set1(*ap.add((i + r) * a.row + p * a.col));
                            lo[r] = $fmadd(x, b0, lo[r]);
                            hi[r] = $fmadd(x, b1, hi[r]);
                        }
                    }
                    for r in 0..MR {
                        $store(cp.add((i + r) * ldc + j), lo[r]);
                        $store(cp.add((i + r) * ldc + j + $lanes), hi[r]);
                    }
                }
            }
        };
    }

    vector_gemm!(
        gemm_avx512,
        rows_avx512,
        tile_avx512,
        "avx512f,avx2,fma",
        8,
        16,
        _mm512_setzero_ps,
        _mm512_set1_ps,
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        _mm512_fmadd_ps
    );
    vector_gemm!(
        gemm_avx2,
        rows_avx2,
        tile_avx2,
        "avx2,fma",
        6,
        8,
        _mm256_setzero_ps,
        _mm256_set1_ps,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_fmadd_ps
    );
}

/// Rows `i..i + rows`, columns `j0..n` with scalar `mul_add`: the portable path, and the same
/// chain per element as the vector tiles. The elements of a block of up to 8 × 8 advance
/// together through `p`, so that their chains overlap instead of waiting on each other's
/// latency.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn edge(
    i: usize,
    rows: usize,
    j0: usize,
    n: usize,
    k: usize,
    a: Lhs<'_>,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    const B: usize = 8;
    let mut r0 = i;
    while r0 < i + rows {
        let nr = (i + rows - r0).min(B);
        let mut c0 = j0;
        while c0 < n {
            let nc = (n - c0).min(B);
            let mut acc = [[0.0f32; B]; B];
            for (r, row) in acc.iter_mut().enumerate().take(nr) {
                if accumulate {
                    row[..nc].copy_from_slice(&c[(r0 + r) * ldc + c0..(r0 + r) * ldc + c0 + nc]);
                }
            }
            for p in 0..k {
                let bp = &b[p * ldb + c0..p * ldb + c0 + nc];
                for (r, row) in acc.iter_mut().enumerate().take(nr) {
                    let x = a.data[(r0 + r) * a.row + p * a.col];
                    for (y, &z) in row.iter_mut().zip(bp) {
                        *y = x.mul_add(z, *y);
                    }
                }
            }
            for (r, row) in acc.iter().enumerate().take(nr) {
                c[(r0 + r) * ldc + c0..(r0 + r) * ldc + c0 + nc].copy_from_slice(&row[..nc]);
            }
            c0 += nc;
        }
        r0 += nr;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_of_the_silu_kernels_gives_the_same_bits() {
        // Each path this CPU has (AVX-512, AVX2, portable), forced in turn, against the
        // portable body.
        let (n, h) = (37, 13);
        let wave = |k: usize, f: f32| (0..k).map(|i| (i as f32 * f).sin() * 6.0).collect();
        let z0: Vec<f32> = wave(n * h, 0.37);
        let bias: Vec<f32> = wave(h, 1.3);
        let da: Vec<f32> = wave(n * h, 0.11);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        type Forward<'a> = &'a dyn Fn(&mut [f32], &[f32], &mut [f32], &mut [f32]);
        type Backward<'a> = &'a dyn Fn(&[f32], &[f32], &[f32], &mut [f32], &mut [f32]);
        let run = |forward: Forward<'_>, backward: Backward<'_>| {
            let (mut z, mut a, mut s) = (z0.clone(), vec![0.0; n * h], vec![0.0; n * h]);
            forward(&mut z, &bias, &mut a, &mut s);
            let (mut dz, mut db) = (vec![0.0; n * h], vec![0.5; h]);
            backward(&da, &z, &s, &mut dz, &mut db);
            [z, a, s, dz, db].map(|v| bits(&v))
        };
        let want = run(&bias_silu_body, &silu_backward_body);
        for path in [
            VectorPath::Portable,
            VectorPath::Avx2Fma,
            VectorPath::Avx512,
        ] {
            if path > with_vector_cap(VectorPath::Avx512, vector_path) {
                continue;
            }
            let got = with_vector_cap(path, || run(&bias_silu, &silu_backward));
            assert!(got == want, "{path:?} differs from the portable body");
        }
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

    /// A naive `A·B` in the same order (`f64`-free: the reference is the same fma chain).
    fn naive(m: usize, n: usize, k: usize, a: Lhs<'_>, b: &[f32], ldb: usize) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut x = 0.0f32;
                for p in 0..k {
                    x = a.data[i * a.row + p * a.col].mul_add(b[p * ldb + j], x);
                }
                c[i * n + j] = x;
            }
        }
        c
    }

    #[test]
    fn vector_paths_give_the_same_bits_as_the_naive_chain_and_f64() {
        // Shapes of the training step (forward, weight gradient, input gradient) shrunk, with
        // ragged edges on both sides, for each path this CPU has, forced in turn.
        let wave =
            |k: usize, f: f32| -> Vec<f32> { (0..k).map(|i| (i as f32 * f).sin()).collect() };
        let paths: Vec<VectorPath> = [
            VectorPath::Portable,
            VectorPath::Avx2Fma,
            VectorPath::Avx512,
        ]
        .into_iter()
        .filter(|&p| p <= vector_path())
        .collect();
        for &(m, n, k) in &[
            (37, 67, 29),
            (8, 32, 5),
            (2, 130, 40),
            (41, 2, 33),
            (1, 1, 0),
        ] {
            let a = wave(m * k, 0.37);
            let b = wave(k * n + 3, 0.11);
            let c0 = wave(m * n, 0.5);
            for (lhs, transposed) in [
                (
                    Lhs {
                        data: &a,
                        row: k,
                        col: 1,
                    },
                    false,
                ),
                (
                    Lhs {
                        data: &a,
                        row: 1,
                        col: m,
                    },
                    true,
                ),
            ] {
                let want = naive(m, n, k, lhs, &b, n);
                for &path in &paths {
                    let (c, c_acc) = with_vector_cap(path, || {
                        let mut c = vec![f32::NAN; m * n];
                        gemm(m, n, k, lhs, &b, n, &mut c, n, false);
                        let mut c_acc = c0.clone();
                        gemm(m, n, k, lhs, &b, n, &mut c_acc, n, true);
                        (c, c_acc)
                    });
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&c), bits(&want), "{path:?} {m}x{n}x{k} t={transposed}");
                    for i in 0..m * n {
                        let r = i / n;
                        let j = i % n;
                        let exact: f64 = c0[i] as f64
                            + (0..k)
                                .map(|p| {
                                    lhs.data[r * lhs.row + p * lhs.col] as f64 * b[p * n + j] as f64
                                })
                                .sum::<f64>();
                        // k roundings of terms of size ≤ 1: |error| ≤ k·2⁻²⁴·(|c0| + k).
                        let bound = (k as f64 + 1.0) * 6e-8 * (1.0 + k as f64);
                        assert!((c_acc[i] as f64 - exact).abs() <= bound, "{path:?}");
                    }
                }
            }
        }
    }
}
