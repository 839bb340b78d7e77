//! Branch-free elementary functions that the compiler can vectorise.
//!
//! `std`'s `f64::exp` is a call into libm and blocks vectorisation of the loops it sits in;
//! the score of a mixture at 10⁸ posterior draws is dominated by it. [`exp`] here is
//! branch-free (clamping instead of branching, the power of two assembled from bits rather than
//! by a float→int cast) and accurate to a few ulp, so loops over slices of it vectorise.
//!
//! The crate also exports a `multiversion!` macro, hidden from the docs: the workspace's one
//! run-time dispatch (AVX2, AVX-512 where a kernel asks for it, or the baseline), used by
//! tsm-targets' and tsm-nn's kernels (not a public API). [`level`] says which path the dispatch takes, and
//! [`cap_level`] lowers it, so that tests can force each path in turn.

use std::sync::atomic::{AtomicU8, Ordering};

/// The instruction-set levels of the run-time dispatch, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The baseline target (SSE2 on x86-64): what the code is compiled for without `RUSTFLAGS`.
    Portable = 0,
    /// AVX2 (256-bit vectors).
    Avx2 = 1,
    /// AVX-512 F, VL and DQ (512-bit vectors; masks and rotates on 256-bit ones too).
    Avx512 = 2,
}

static CAP: AtomicU8 = AtomicU8::new(Level::Avx512 as u8);

/// The level the dispatch uses: the highest the CPU has, at most the [`cap_level`] cap.
#[inline]
pub fn level() -> Level {
    let cap = CAP.load(Ordering::Relaxed);
    #[cfg(target_arch = "x86_64")]
    {
        if cap >= Level::Avx512 as u8
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx2")
        {
            return Level::Avx512;
        }
        if cap >= Level::Avx2 as u8 && std::arch::is_x86_feature_detected!("avx2") {
            return Level::Avx2;
        }
    }
    let _ = cap;
    Level::Portable
}

/// Caps the dispatch at `level` for the whole process (`None`: no cap), and returns the
/// previous cap. Every path computes the same bits, so this changes speed only: it lets tests
/// and benchmarks run each path in turn on a CPU that has them all.
pub fn cap_level(level: Option<Level>) -> Option<Level> {
    let new = level.map_or(Level::Avx512 as u8, |l| l as u8);
    match CAP.swap(new, Ordering::Relaxed) {
        0 => Some(Level::Portable),
        1 => Some(Level::Avx2),
        _ => None,
    }
}

/// Runs `f` with the dispatch capped at `level` ([`cap_level`]), then restores the cap; calls
/// are serialised by a lock, so that tests forcing different paths at the same time each run
/// on their own (code outside `with_cap` still sees whichever cap is set).
pub fn with_cap<T>(level: Option<Level>, f: impl FnOnce() -> T) -> T {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let previous = cap_level(level);
    struct Restore(Option<Level>);
    impl Drop for Restore {
        fn drop(&mut self) {
            cap_level(self.0);
        }
    }
    let _restore = Restore(previous);
    f()
}

/// The levels this CPU has, lowest first (for tests that force each in turn).
pub fn available_levels() -> Vec<Level> {
    let top = with_cap(None, level);
    [Level::Portable, Level::Avx2, Level::Avx512]
        .into_iter()
        .filter(|&l| l <= top)
        .collect()
}

/// Defines `$name` that runs `$kernel` compiled with AVX2 enabled when the CPU has it (and
/// [`level`] allows it), and as compiled for the baseline target otherwise. With a leading
/// `avx512;` it also compiles an AVX-512 (F, VL, DQ) copy and takes it first where [`level`]
/// allows (opt-in per kernel: 512-bit vectors pay only where a loop is long and arithmetic).
///
/// The kernel must be an `#[inline(always)]` function of plain Rust: every path runs the same
/// IEEE operations in the same order (Rust never contracts `a * b + c` into an FMA on its own),
/// so the results are identical bit for bit; the wider levels only make the vectoriser use
/// wider registers. This is how the hot loops get vector speed without users setting
/// `RUSTFLAGS`.
//
// Exported (and so public) only because the other crates of the workspace use it — the
// mixture kernels of tsm-targets and the training kernels of tsm-nn — so that there is one
// dispatch in the workspace; it is not part of the API, hence `#[doc(hidden)]`.
#[doc(hidden)]
#[macro_export]
macro_rules! multiversion {
    (avx512; $(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $kernel:path) => {
        $(#[$meta])*
        #[inline]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2")]
                unsafe fn widest($($arg: $ty),*) $(-> $ret)? {
                    $kernel($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    $kernel($($arg),*)
                }
                match $crate::fastmath::level() {
                    // SAFETY: `level` reports AVX-512 F, VL, DQ (and AVX2) only where the CPU
                    // has them.
                    $crate::fastmath::Level::Avx512 => return unsafe { widest($($arg),*) },
                    // SAFETY: `level` reports AVX2 only where the CPU has it.
                    $crate::fastmath::Level::Avx2 => return unsafe { wide($($arg),*) },
                    $crate::fastmath::Level::Portable => {}
                }
            }
            $kernel($($arg),*)
        }
    };
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $kernel:path) => {
        $(#[$meta])*
        #[inline]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    $kernel($($arg),*)
                }
                if $crate::fastmath::level() >= $crate::fastmath::Level::Avx2 {
                    // SAFETY: `level` reports AVX2 (or above) only where the CPU has it.
                    return unsafe { wide($($arg),*) };
                }
            }
            $kernel($($arg),*)
        }
    };
}

const LOG2_E: f64 = std::f64::consts::LOG2_E;
// ln 2 split in a part exact in few bits and a correction (Cody–Waite).
const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000);
const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76);
// 1.5 · 2⁵²: adding it rounds to an integer held in the low mantissa bits.
const ROUND_MAGIC: f64 = 6_755_399_441_055_744.0;

/// `eˣ` to within ~2 ulp for `x ∈ [−708, 709]`; below `−708` it returns 0 (no subnormals),
/// above `709` it returns `e⁷⁰⁹` (finite); NaN propagates.
///
/// Method: `x = n ln 2 + r`, `|r| ≤ ln2/2`, `eʳ` by a degree-13 Taylor polynomial (truncation
/// below 2⁻⁵⁶ on that interval), `2ⁿ` by writing `n + 1023` into the exponent bits.
///
/// # Examples
/// ```
/// let x = 0.3;
/// assert!((tsm_core::fastmath::exp(x) - x.exp()).abs() < 4.0 * f64::EPSILON * x.exp());
/// ```
#[inline(always)]
pub fn exp(x: f64) -> f64 {
    let underflow = x < -708.0;
    let x = x.clamp(-708.0, 709.0);
    let shifted = x * LOG2_E + ROUND_MAGIC;
    let n = shifted - ROUND_MAGIC;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Horner, degree 13.
    let mut p = 1.0 / 6_227_020_800.0;
    p = p * r + 1.0 / 479_001_600.0;
    p = p * r + 1.0 / 39_916_800.0;
    p = p * r + 1.0 / 3_628_800.0;
    p = p * r + 1.0 / 362_880.0;
    p = p * r + 1.0 / 40_320.0;
    p = p * r + 1.0 / 5_040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // The low bits of `shifted` hold n as a two's-complement integer offset from the magic.
    let n_bits = shifted.to_bits().wrapping_sub(ROUND_MAGIC.to_bits());
    let scaled = f64::from_bits(p.to_bits().wrapping_add(n_bits << 52));
    if underflow {
        0.0
    } else {
        scaled
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_matches_std_within_a_few_ulp() {
        let mut worst: f64 = 0.0;
        let mut x = -708.0;
        while x < 709.0 {
            let (a, b) = (super::exp(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
            x += 0.01234567;
        }
        assert!(worst < 4.0 * f64::EPSILON, "worst relative error {worst:e}");
        assert_eq!(super::exp(0.0), 1.0);
        assert_eq!(super::exp(-800.0), 0.0);
        assert_eq!(super::exp(f64::NEG_INFINITY), 0.0);
        assert!(super::exp(f64::NAN).is_nan());
        assert!(super::exp(1000.0).is_finite());
    }
}
