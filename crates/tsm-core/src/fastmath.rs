//! Branch-free elementary functions that the compiler can vectorise.
//!
//! `std`'s `f64::exp` is a call into libm and blocks vectorisation of the loops it sits in;
//! the score of a mixture at 10⁸ posterior draws is dominated by it. [`exp`] here is
//! branch-free (clamping instead of branching, the power of two assembled from bits rather than
//! by a float→int cast) and accurate to a few ulp, so loops over slices of it vectorise.
//!
//! The crate also exports a `multiversion!` macro, hidden from the docs: the workspace's one
//! AVX2 run-time dispatch, used by tsm-targets' and tsm-nn's kernels (not a public API).

/// Defines `$name` that runs `$kernel` compiled with AVX2 enabled when the CPU has it, and
/// as compiled for the baseline target otherwise.
///
/// The kernel must be an `#[inline(always)]` function of plain Rust: both paths run the same
/// IEEE operations in the same order (Rust never contracts `a * b + c` into an FMA on its own),
/// so the results are identical bit for bit; AVX2 only makes the vectoriser use wider
/// registers. This is how the hot loops get vector speed without users setting `RUSTFLAGS`.
//
// Exported (and so public) only because the other crates of the workspace use it — the
// mixture kernels of tsm-targets and the training kernels of tsm-nn — so that there is one
// AVX2 dispatch in the workspace; it is not part of the API, hence `#[doc(hidden)]`.
#[doc(hidden)]
#[macro_export]
macro_rules! multiversion {
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
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2, checked just above.
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
