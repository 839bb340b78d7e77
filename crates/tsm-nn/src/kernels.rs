//! Vectorised CPU kernels for the fast training path: the matrix products ([`gemm`]), fused
//! with a hidden layer's bias + SiLU ([`gemm_bias_silu`]) or its backward
//! ([`gemm_silu_backward`]) on each finished tile, with a branch-free `exp` that the compiler
//! vectorises.
//!
//! [`gemm`] is register-blocked for the training step's small shapes (a half-batch of 256 rows
//! against 128 × 130 weights) with run-time dispatch to AVX-512, AVX2 + FMA or a portable
//! path; every output element is the same chain of fused multiply–adds on every path, so the
//! paths give the same bits (tested, each forced in turn).
//!
//! `SiLU(z) = z σ(z)`, `σ(z) = 1/(1 + e^{−z})`, `SiLU'(z) = σ + zσ(1 − σ) = σ + SiLU(z)(1 − σ)`.
//!
//! Users do not set `RUSTFLAGS`, so every kernel is compiled once per path — the products
//! with their epilogues inlined by `vector_gemm!`, other elementwise kernels (the time
//! embedding) by [`vector_dispatch!`]: AVX-512 enabled, AVX2 enabled, and the baseline target
//! — and the widest copy the CPU has is chosen at run time ([`vector_path`], which also
//! follows tsm-core's `fastmath` cap; [`cap_vector_path`] lowers it). All copies run the same
//! IEEE operations in the same order (Rust never contracts `a * b + c` into an FMA on its
//! own), so they give the same bits (tested, each forced in turn).
//!
//! An implementation detail of [`crate::engine::CpuEngine`] and [`crate::mmd`]; only the
//! path control is public.

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

/// One row of a hidden layer's forward pass: `z = v + bias`, `sig = σ(z)`, `act = z σ(z)`
/// (`z` itself is not kept: the backward pass needs only `σ` and `act`).
#[inline(always)]
fn bias_silu_row(v: &[f32], bias: &[f32], sig: &mut [f32], act: &mut [f32]) {
    for (((&v, &b), s), a) in v.iter().zip(bias).zip(sig).zip(act) {
        let z = v + b;
        let sg = 1.0 / (1.0 + exp_f32(-z));
        *s = sg;
        *a = z * sg;
    }
}

/// One row of a hidden layer's backward pass through SiLU: `dz = g ⊙ SiLU'(z)`, and
/// `db += dz`, with `SiLU'(z) = σ + zσ(1 − σ) = σ + act (1 − σ)` from the forward pass's `σ`
/// and `act = zσ`.
#[inline(always)]
fn silu_backward_row(g: &[f32], act: &[f32], sig: &[f32], dz: &mut [f32], db: &mut [f32]) {
    for ((((&g, &a), &s), o), b) in g.iter().zip(act).zip(sig).zip(dz).zip(db) {
        let v = g * (s + a * (1.0 - s));
        *o = v;
        *b += v;
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

/// Columns per panel of a [`Rhs::Panels`] right factor.
pub const PANEL: usize = 32;

/// The right factor `B: [k, n]` of a product.
#[derive(Debug, Clone, Copy)]
pub enum Rhs<'a> {
    /// Row-major with row stride `ld`.
    Rows {
        /// The elements.
        data: &'a [f32],
        /// The stride between rows `p`.
        ld: usize,
    },
    /// In panels of [`PANEL`] columns, each a row-major `[k, PANEL]` block, the last one
    /// zero-padded ([`panel_index`], [`panels_len`]). A panel is contiguous, so it stays in
    /// L1 while every row of `A` passes it (the product runs panel by panel); the engine
    /// keeps its weights so.
    Panels(&'a [f32]),
}

/// Where element `(p, j)` of a `k`-row matrix sits in [`Rhs::Panels`] layout.
#[inline]
pub fn panel_index(k: usize, p: usize, j: usize) -> usize {
    (j / PANEL) * k * PANEL + p * PANEL + j % PANEL
}

/// The panels of a `[k, n]` matrix in [`Rhs::Panels`] layout, numbered.
fn panels(data: &[f32], k: usize, n: usize) -> impl Iterator<Item = (usize, &[f32])> {
    (0..n.div_ceil(PANEL)).map(move |q| (q, &data[q * k * PANEL..(q + 1) * k * PANEL]))
}

/// The length of a `[k, n]` matrix in [`Rhs::Panels`] layout.
pub fn panels_len(k: usize, n: usize) -> usize {
    n.div_ceil(PANEL) * k * PANEL
}

/// What a product does with each finished piece of a row of `A·B` while it is still in
/// registers or L1: store it ([`gemm`]), or run the layer's elementwise step on it
/// ([`gemm_bias_silu`], [`gemm_silu_backward`]), which saves a pass over `[n, h]` buffers.
///
/// Every element of the product reaches `row` once, and for each column the rows arrive in
/// increasing order (row tiles in order, and row by row inside a tile), so an epilogue that
/// sums over rows sums in row order on every path.
trait Epilogue {
    /// Row `i`, columns `j..j + vals.len()` of the product.
    fn row(&mut self, i: usize, j: usize, vals: &[f32]);
}

/// `C = A·B`.
struct Store<'a> {
    c: &'a mut [f32],
    ldc: usize,
}

impl Epilogue for Store<'_> {
    #[inline(always)]
    fn row(&mut self, i: usize, j: usize, vals: &[f32]) {
        let at = i * self.ldc + j;
        self.c[at..at + vals.len()].copy_from_slice(vals);
    }
}

/// `z = A·B + bias`, `sig = σ(z)`, `act = z σ(z)` ([`bias_silu_row`]).
struct BiasSilu<'a> {
    bias: &'a [f32],
    sig: &'a mut [f32],
    act: &'a mut [f32],
    ld: usize,
}

impl Epilogue for BiasSilu<'_> {
    #[inline(always)]
    fn row(&mut self, i: usize, j: usize, vals: &[f32]) {
        let (at, len) = (i * self.ld + j, vals.len());
        bias_silu_row(
            vals,
            &self.bias[j..j + len],
            &mut self.sig[at..at + len],
            &mut self.act[at..at + len],
        );
    }
}

/// `dz = (A·B) ⊙ SiLU'(z)`, `db += Σ_rows dz` ([`silu_backward_row`], rows in order).
struct SiluBackward<'a> {
    act: &'a [f32],
    sig: &'a [f32],
    dz: &'a mut [f32],
    db: &'a mut [f32],
    ld: usize,
}

impl Epilogue for SiluBackward<'_> {
    #[inline(always)]
    fn row(&mut self, i: usize, j: usize, vals: &[f32]) {
        let (at, len) = (i * self.ld + j, vals.len());
        silu_backward_row(
            vals,
            &self.act[at..at + len],
            &self.sig[at..at + len],
            &mut self.dz[at..at + len],
            &mut self.db[j..j + len],
        );
    }
}

/// Checks that the slices hold the shapes of an `[m, k]·[k, n]` product (a bug in the
/// caller otherwise).
fn check_shapes(m: usize, n: usize, k: usize, a: Lhs<'_>, b: Rhs<'_>) {
    assert!(
        k == 0 || (m - 1) * a.row + (k - 1) * a.col < a.data.len(),
        "gemm: A too short"
    );
    let enough = match b {
        Rhs::Rows { data, ld } => k == 0 || (k - 1) * ld + n <= data.len(),
        Rhs::Panels(data) => panels_len(k, n) <= data.len(),
    };
    assert!(enough, "gemm: B too short");
}

/// `C = A·B`: `C: [m, n]` row-major with row stride `ldc`, `A: [m, k]` strided ([`Lhs`]),
/// `B: [k, n]` row-major with row stride `ldb`.
///
/// Every element is one chain of fused multiply–adds over `p = 0, 1, …, k − 1` in that order,
/// starting from 0, on every path and for every blocking: the AVX-512, AVX2 and portable
/// paths give the same bits (tested). Register-blocked for the training step's shapes (`k` ≤
/// a few hundred, so the panels stay in cache without packing).
///
/// # Panics
/// When a slice is too short for the shapes (a bug in the caller).
#[allow(clippy::too_many_arguments)]
pub fn gemm(m: usize, n: usize, k: usize, a: Lhs<'_>, b: Rhs<'_>, c: &mut [f32], ldc: usize) {
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * ldc + n <= c.len(), "gemm: C too short");
    dispatch(m, n, k, a, b, &mut Store { c, ldc });
}

/// A hidden layer's forward pass: `z = A·B + bias` (`bias: [n]`), `sig = σ(z)`,
/// `act = z σ(z)` (both `[m, n]` with row stride `ld`), applied to each tile of the product
/// as it finishes. The same bits as [`gemm`] followed by the same elementwise operations
/// row by row (tested).
///
/// # Panics
/// When a slice is too short for the shapes (a bug in the caller).
#[allow(clippy::too_many_arguments)]
pub fn gemm_bias_silu(
    m: usize,
    n: usize,
    k: usize,
    a: Lhs<'_>,
    b: Rhs<'_>,
    bias: &[f32],
    sig: &mut [f32],
    act: &mut [f32],
    ld: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    let end = (m - 1) * ld + n;
    assert!(
        bias.len() >= n && sig.len() >= end && act.len() >= end,
        "gemm_bias_silu: an output too short"
    );
    let mut epi = BiasSilu { bias, sig, act, ld };
    dispatch(m, n, k, a, b, &mut epi);
}

/// A hidden layer's backward pass through SiLU: `dz = (A·B) ⊙ SiLU'(z)` with
/// `SiLU'(z) = σ + act (1 − σ)` and `db += Σ_rows dz` (`act, sig, dz: [m, n]` with row stride
/// `ld`, `db: [n]`), where `A·B` is `∂ℓ/∂act`, applied to each tile as it finishes. The same
/// bits as [`gemm`] followed by the same elementwise operations row by row, `db` summed in
/// row order (tested).
///
/// # Panics
/// When a slice is too short for the shapes (a bug in the caller).
#[allow(clippy::too_many_arguments)]
pub fn gemm_silu_backward(
    m: usize,
    n: usize,
    k: usize,
    a: Lhs<'_>,
    b: Rhs<'_>,
    act: &[f32],
    sig: &[f32],
    dz: &mut [f32],
    db: &mut [f32],
    ld: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    let end = (m - 1) * ld + n;
    assert!(
        db.len() >= n && act.len() >= end && sig.len() >= end && dz.len() >= end,
        "gemm_silu_backward: a slice too short"
    );
    let mut epi = SiluBackward {
        act,
        sig,
        dz,
        db,
        ld,
    };
    dispatch(m, n, k, a, b, &mut epi);
}

/// The product on the widest path this CPU allows ([`vector_path`]).
fn dispatch<E: Epilogue>(m: usize, n: usize, k: usize, a: Lhs<'_>, b: Rhs<'_>, epi: &mut E) {
    check_shapes(m, n, k, a, b);
    match vector_path() {
        #[cfg(target_arch = "x86_64")]
        VectorPath::Avx512 => {
            // SAFETY: `vector_path` reports AVX-512 only where the CPU has avx512f and fma.
            unsafe { x86::gemm_avx512(m, n, k, a, b, epi) }
        }
        #[cfg(target_arch = "x86_64")]
        VectorPath::Avx2Fma => {
            // SAFETY: `vector_path` reports AVX2+FMA only where the CPU has both.
            unsafe { x86::gemm_avx2(m, n, k, a, b, epi) }
        }
        _ => match b {
            Rhs::Rows { data, ld } => edge(0, m, 0, n, k, a, data, ld, 0, epi),
            Rhs::Panels(data) => {
                for (q, panel) in panels(data, k, n) {
                    let j0 = q * PANEL;
                    edge(0, m, j0, n.min(j0 + PANEL), k, a, panel, PANEL, 0, epi);
                }
            }
        },
    }
}

/// The vector paths: one `MR × 2 vectors` register tile written once per instruction set by a
/// macro (the same code with 512- or 256-bit intrinsics). The accumulators stay in registers
/// over the whole reduction; each lane runs the same fused multiply–add chain as
/// [`edge`]'s scalar `mul_add`, so all paths give the same bits. A finished tile goes through
/// a small buffer on the stack to the [`Epilogue`], inlined (and so vectorised) here.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Epilogue, Lhs, Rhs, PANEL};
    use std::arch::x86_64::*;

    std::thread_local! {
        /// The zero-padded right-edge panel of `B` (reused across calls).
        static EDGE_PANEL: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    macro_rules! vector_gemm {
        ($gemm:ident, $rows:ident, $tile:ident, $narrow:ident, $column:ident, $features:literal,
         $mr:literal, $lanes:literal,
         $zero:ident, $set1:ident, $load:ident, $store:ident, $fmadd:ident) => {
            /// The product on this instruction set (see [`super::gemm`]).
            ///
            /// The right edge (`n mod 2·lanes` columns) runs vectorised over the rows where
            /// `A`'s rows are contiguous (`$narrow`), and otherwise through the same tiles
            /// (one or two vectors wide) on a copy of `B`'s last columns padded with zeros:
            /// the padding lanes are computed and dropped, the real ones run the same chains.
            ///
            /// # Safety
            /// The CPU must have the enabled features, and the slices must hold the shapes
            /// (checked by the caller).
            #[target_feature(enable = $features)]
            pub(super) unsafe fn $gemm<E: Epilogue>(
                m: usize,
                n: usize,
                k: usize,
                a: Lhs<'_>,
                b: Rhs<'_>,
                epi: &mut E,
            ) {
                const NR: usize = 2 * $lanes;
                let (b, ldb) = match b {
                    Rhs::Rows { data, ld } => (data, ld),
                    Rhs::Panels(data) => {
                        // Panel by panel, every row tile against the panel (in L1), in
                        // sub-panels of one tile's width.
                        for (q, panel) in super::panels(data, k, n) {
                            let j0 = q * PANEL;
                            let cols = (n - j0).min(PANEL);
                            let mut i = 0;
                            while i < m {
                                let rows = (m - i).min($mr);
                                let mut s = 0;
                                while s < cols {
                                    let w = (cols - s).min(NR);
                                    // SAFETY: rows and columns inside the checked shapes;
                                    // the panel is PANEL wide and NR divides PANEL.
                                    unsafe {
                                        if w > $lanes {
                                            $rows::<2, E>(
                                                i,
                                                rows,
                                                s,
                                                k,
                                                a,
                                                panel,
                                                PANEL,
                                                j0 + s,
                                                w,
                                                epi,
                                            )
                                        } else {
                                            $rows::<1, E>(
                                                i,
                                                rows,
                                                s,
                                                k,
                                                a,
                                                panel,
                                                PANEL,
                                                j0 + s,
                                                w,
                                                epi,
                                            )
                                        }
                                    };
                                    s += NR;
                                }
                                i += rows;
                            }
                        }
                        return;
                    }
                };
                let full_cols = n - n % NR;
                let mut i = 0;
                while i < m {
                    let rows = (m - i).min($mr);
                    let mut j = 0;
                    while j < full_cols {
                        // SAFETY: the rows and columns are inside the checked shapes.
                        unsafe { $rows::<2, E>(i, rows, j, k, a, b, ldb, j, NR, epi) };
                        j += NR;
                    }
                    i += rows;
                }
                let rem = n - full_cols;
                if rem == 0 {
                    return;
                }
                if a.row == 1 && m >= $lanes {
                    // SAFETY: as above.
                    unsafe { $narrow(m, full_cols, n, k, a, b, ldb, epi) };
                    return;
                }
                EDGE_PANEL.with_borrow_mut(|panel| {
                    // One vector wide if the edge fits in one: half the padding lanes.
                    let width = if rem <= $lanes { $lanes } else { NR };
                    panel.clear();
                    panel.resize(k * width, 0.0);
                    for p in 0..k {
                        panel[p * width..p * width + rem]
                            .copy_from_slice(&b[p * ldb + full_cols..p * ldb + n]);
                    }
                    let mut i = 0;
                    while i < m {
                        let rows = (m - i).min($mr);
                        // SAFETY: the panel has k rows of `width` columns.
                        unsafe {
                            if width == NR {
                                $rows::<2, E>(i, rows, 0, k, a, panel, width, full_cols, rem, epi)
                            } else {
                                $rows::<1, E>(i, rows, 0, k, a, panel, width, full_cols, rem, epi)
                            }
                        };
                        i += rows;
                    }
                });
            }

            /// The right edge, columns `j0..n`, when `A`'s rows are contiguous for each `p`
            /// (`a.row == 1`, the weight gradients' `dzᵀ`): vectorised over the rows instead,
            /// blocks of up to four vectors of rows against one broadcast column of `B`, so
            /// that a narrow edge (two columns of the first layer's 130) costs no padding.
            /// The rows below the last full vector go through the scalar chains of `edge`.
            #[target_feature(enable = $features)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn $narrow<E: Epilogue>(
                m: usize,
                j0: usize,
                n: usize,
                k: usize,
                a: Lhs<'_>,
                b: &[f32],
                ldb: usize,
                epi: &mut E,
            ) {
                let mut i = 0;
                while i + $lanes <= m {
                    let vectors = ((m - i) / $lanes).min(4);
                    for j in j0..n {
                        // SAFETY: rows i..i + vectors·lanes ≤ m, column j < n.
                        unsafe {
                            match vectors {
                                4 => $column::<4, E>(i, j, k, a, b, ldb, epi),
                                3 => $column::<3, E>(i, j, k, a, b, ldb, epi),
                                2 => $column::<2, E>(i, j, k, a, b, ldb, epi),
                                _ => $column::<1, E>(i, j, k, a, b, ldb, epi),
                            }
                        }
                    }
                    i += vectors * $lanes;
                }
                if i < m {
                    super::edge(i, m - i, j0, n, k, a, b, ldb, j0, epi);
                }
            }

            /// Rows `i..i + V·lanes` of column `j` (see `$narrow`).
            #[target_feature(enable = $features)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn $column<const V: usize, E: Epilogue>(
                i: usize,
                j: usize,
                k: usize,
                a: Lhs<'_>,
                b: &[f32],
                ldb: usize,
                epi: &mut E,
            ) {
                let (ap, bp) = (a.data.as_ptr(), b.as_ptr());
                let mut out = [0.0f32; 4 * $lanes];
                // SAFETY: the caller checked that A holds rows i..i+V·lanes (contiguous for
                // each p < k) and B row p < k column j; `out` holds V ≤ 4 vectors.
                unsafe {
                    let mut acc = [$zero(); V];
                    for p in 0..k {
                        let x = $set1(*bp.add(p * ldb + j));
                        for v in 0..V {
                            let y = $load(ap.add(p * a.col + i + v * $lanes));
                            acc[v] = $fmadd(y, x, acc[v]);
                        }
                    }
                    for v in 0..V {
                        $store(out.as_mut_ptr().add(v * $lanes), acc[v]);
                    }
                }
                for r in 0..V * $lanes {
                    epi.row(i + r, j, &out[r..r + 1]);
                }
            }

            /// Rows `i..i + rows` (at most `$mr`) of `A`, columns `jb..jb + V·lanes` of `B`,
            /// whose first `cols` columns are columns `j..j + cols` of the product: one full
            /// tile, or tiles of 4, 2 and 1 rows for a ragged bottom.
            #[target_feature(enable = $features)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn $rows<const V: usize, E: Epilogue>(
                i: usize,
                rows: usize,
                jb: usize,
                k: usize,
                a: Lhs<'_>,
                b: &[f32],
                ldb: usize,
                j: usize,
                cols: usize,
                epi: &mut E,
            ) {
                // SAFETY (every call): rows r..r+step are below `rows`, inside the shapes.
                if rows == $mr {
                    unsafe { $tile::<$mr, V, E>(i, jb, k, a, b, ldb, j, cols, epi) };
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
                            1 => $tile::<1, V, E>(i + r, jb, k, a, b, ldb, j, cols, epi),
                            2 => $tile::<2, V, E>(i + r, jb, k, a, b, ldb, j, cols, epi),
                            _ => $tile::<4, V, E>(i + r, jb, k, a, b, ldb, j, cols, epi),
                        }
                    }
                    r += step;
                }
            }

            /// One `MR × V·lanes` tile (`V` = 1 or 2 vectors) at rows `i..`, `B` columns
            /// `jb..`, handed to `epi` as columns `j..j + cols` of the product.
            #[target_feature(enable = $features)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn $tile<const MR: usize, const V: usize, E: Epilogue>(
                i: usize,
                jb: usize,
                k: usize,
                a: Lhs<'_>,
                b: &[f32],
                ldb: usize,
                j: usize,
                cols: usize,
                epi: &mut E,
            ) {
                const NR: usize = 2 * $lanes;
                let (ap, bp) = (a.data.as_ptr(), b.as_ptr());
                let mut out = [0.0f32; $mr * NR];
                // SAFETY (all pointer offsets below): the caller checked that A holds rows
                // i..i+MR over p < k and B rows p < k over columns jb..jb+V·lanes; `out`
                // holds MR ≤ $mr rows of V·lanes ≤ NR.
                unsafe {
                    // `hi` only for two vectors (V is a constant: the branches fold away).
                    let mut lo = [$zero(); MR];
                    let mut hi = [$zero(); MR];
                    for p in 0..k {
                        let b0 = $load(bp.add(p * ldb + jb));
                        let b1 = if V == 2 {
                            $load(bp.add(p * ldb + jb + $lanes))
                        } else {
                            $zero()
                        };
                        for r in 0..MR {
                            let x = $set1(*ap.add((i + r) * a.row + p * a.col));
                            lo[r] = $fmadd(x, b0, lo[r]);
                            if V == 2 {
                                hi[r] = $fmadd(x, b1, hi[r]);
                            }
                        }
                    }
                    let op = out.as_mut_ptr();
                    for r in 0..MR {
                        $store(op.add(r * NR), lo[r]);
                        if V == 2 {
                            $store(op.add(r * NR + $lanes), hi[r]);
                        }
                    }
                }
                for r in 0..MR {
                    epi.row(i + r, j, &out[r * NR..r * NR + cols]);
                }
            }
        };
    }

    vector_gemm!(
        gemm_avx512,
        rows_avx512,
        tile_avx512,
        narrow_avx512,
        column_avx512,
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
        narrow_avx2,
        column_avx2,
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

/// Rows `i..i + rows`, columns `j0..n` (columns `jb0..` of `B`) with scalar `mul_add`: the
/// portable path, and the same
/// chain per element as the vector tiles. The elements of a block of up to 8 × 8 advance
/// together through `p`, so that their chains overlap instead of waiting on each other's
/// latency.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn edge<E: Epilogue>(
    i: usize,
    rows: usize,
    j0: usize,
    n: usize,
    k: usize,
    a: Lhs<'_>,
    b: &[f32],
    ldb: usize,
    jb0: usize,
    epi: &mut E,
) {
    const B: usize = 8;
    let mut r0 = i;
    while r0 < i + rows {
        let nr = (i + rows - r0).min(B);
        let mut c0 = j0;
        while c0 < n {
            let nc = (n - c0).min(B);
            let mut acc = [[0.0f32; B]; B];
            for p in 0..k {
                let bc = c0 - j0 + jb0;
                let bp = &b[p * ldb + bc..p * ldb + bc + nc];
                for (r, row) in acc.iter_mut().enumerate().take(nr) {
                    let x = a.data[(r0 + r) * a.row + p * a.col];
                    for (y, &z) in row.iter_mut().zip(bp) {
                        *y = x.mul_add(z, *y);
                    }
                }
            }
            for (r, row) in acc.iter().enumerate().take(nr) {
                epi.row(r0 + r, c0, &row[..nc]);
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
            let (mut a, mut s) = ([0.0], [0.0]);
            bias_silu_row(&[z0], &[0.0], &mut s, &mut a);
            assert!((a[0] as f64 - f(z0)).abs() < 1e-6);
            let (mut dz, mut db) = ([0.0], [0.0]);
            silu_backward_row(&[1.0], &a, &s, &mut dz, &mut db);
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
        // ragged edges on both sides (right edges of one and two vectors, and the row-wise
        // edge of a transposed A with 1–4 vectors of rows and leftover rows), for each path
        // this CPU has, forced in turn.
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
            (19, 52, 17),
            (70, 130, 9),
            (1, 1, 0),
        ] {
            let a = wave(m * k, 0.37);
            let b = wave(k * n + 3, 0.11);
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
                // The fused epilogues against the naive product followed by the row kernels
                // (and `db` summed in row order).
                let bias = wave(n, 1.3);
                let (sig_ref, act_ref) = {
                    let (mut s, mut a) = (vec![0.0; m * n], vec![0.0; m * n]);
                    for r in 0..m {
                        let row = r * n..(r + 1) * n;
                        bias_silu_row(&want[row.clone()], &bias, &mut s[row.clone()], &mut a[row]);
                    }
                    (s, a)
                };
                let (dz_ref, db_ref) = {
                    let (mut dz, mut db) = (vec![0.0; m * n], vec![0.25; n]);
                    for r in 0..m {
                        let row = r * n..(r + 1) * n;
                        silu_backward_row(
                            &want[row.clone()],
                            &act_ref[row.clone()],
                            &sig_ref[row.clone()],
                            &mut dz[row],
                            &mut db,
                        );
                    }
                    (dz, db)
                };
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                // B row-major, and the same B in panels (zero-padded).
                let mut packed = vec![0.0; panels_len(k, n)];
                for p in 0..k {
                    for j in 0..n {
                        packed[panel_index(k, p, j)] = b[p * n + j];
                    }
                }
                let layouts = [Rhs::Rows { data: &b, ld: n }, Rhs::Panels(&packed)];
                for (&path, rhs) in paths
                    .iter()
                    .flat_map(|p| layouts.iter().map(move |r| (p, *r)))
                {
                    let (c, fused, backward) = with_vector_cap(path, || {
                        let mut c = vec![f32::NAN; m * n];
                        gemm(m, n, k, lhs, rhs, &mut c, n);
                        let (mut s, mut a) = (vec![0.0; m * n], vec![0.0; m * n]);
                        gemm_bias_silu(m, n, k, lhs, rhs, &bias, &mut s, &mut a, n);
                        let (mut dz, mut db) = (vec![0.0; m * n], vec![0.25; n]);
                        gemm_silu_backward(
                            m, n, k, lhs, rhs, &act_ref, &sig_ref, &mut dz, &mut db, n,
                        );
                        (c, [s, a], [dz, db])
                    });
                    let layout = match rhs {
                        Rhs::Rows { .. } => "rows",
                        Rhs::Panels(_) => "panels",
                    };
                    let at = format!("{path:?} {layout} {m}x{n}x{k} t={transposed}");
                    assert_eq!(bits(&c), bits(&want), "{at}");
                    for (got, want) in fused.iter().zip([&sig_ref, &act_ref]) {
                        assert_eq!(bits(got), bits(want), "bias + SiLU, {at}");
                    }
                    assert_eq!(bits(&backward[0]), bits(&dz_ref), "SiLU backward dz, {at}");
                    assert_eq!(bits(&backward[1]), bits(&db_ref), "SiLU backward db, {at}");
                    for i in 0..m * n {
                        let (r, j) = (i / n, i % n);
                        let exact: f64 = (0..k)
                            .map(|p| {
                                lhs.data[r * lhs.row + p * lhs.col] as f64 * b[p * n + j] as f64
                            })
                            .sum();
                        // k roundings of partial sums of size ≤ k: |error| ≤ k·2⁻²⁴·k.
                        let bound = (k as f64 + 1.0) * 6e-8 * (1.0 + k as f64);
                        assert!((c[i] as f64 - exact).abs() <= bound, "{at}");
                    }
                }
            }
        }
    }
}
