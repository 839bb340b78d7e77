//! Reproducible random streams for parallel Monte Carlo.
//!
//! Each work item (a time point, a block of points) gets its own generator seeded from
//! `(seed, stream)`, so results do not depend on the number of threads or on scheduling.
//! The generator, [`FastRng`], runs four interleaved xoshiro256++ generators (fast, 256-bit
//! state each, passes BigCrush) and refills a block of 64 outputs at a time in a loop the
//! compiler vectorises; seeds are expanded by SplitMix64, as the xoshiro authors recommend.

use rand::{RngCore, SeedableRng};

/// The generator for work item `stream` of a run seeded with `seed`.
///
/// # Examples
/// ```
/// use rand::Rng;
/// let mut a = tsm_core::rng::stream(42, 7);
/// let mut b = tsm_core::rng::stream(42, 7);
/// assert_eq!(a.random::<u64>(), b.random::<u64>());
/// ```
pub fn stream(seed: u64, stream: u64) -> FastRng {
    let mixed = splitmix64(seed ^ splitmix64(stream.wrapping_add(0x9E37_79B9_7F4A_7C15)));
    FastRng::seed_from_u64(mixed)
}

const LANES: usize = 4;
const BLOCK: usize = 64;

/// Four xoshiro256++ generators in lock-step, served through a 64-value buffer.
///
/// Output `k` of the stream is output `k / 4` of lane `k % 4`; the lanes are seeded from the
/// 32-byte seed through SplitMix64, so distinct seeds give unrelated lanes. About twice as fast
/// per `u64` as one scalar xoshiro256++ because the refill vectorises (four lanes per AVX2
/// register); statistically each lane is plain xoshiro256++.
#[derive(Debug, Clone)]
pub struct FastRng {
    // state[word][lane]
    state: [[u64; LANES]; 4],
    buffer: [u64; BLOCK],
    next: usize,
}

impl FastRng {
    fn refill(&mut self) {
        refill(&mut self.state, &mut self.buffer);
        self.next = 0;
    }
}

/// Refills `out` with 16 steps of the four lanes (integer operations: the AVX-512, AVX2 and
/// portable paths give identical bits).
fn refill(state: &mut [[u64; LANES]; 4], out: &mut [u64; BLOCK]) {
    #[cfg(target_arch = "x86_64")]
    match crate::fastmath::level() {
        crate::fastmath::Level::Avx512 => {
            // SAFETY: `level` reports AVX-512 (F, VL) and AVX2 only where the CPU has them.
            unsafe { vector::refill_avx512(state, out) };
            return;
        }
        crate::fastmath::Level::Avx2 => {
            // SAFETY: `level` reports AVX2 only where the CPU has it.
            unsafe { vector::refill_avx2(state, out) };
            return;
        }
        crate::fastmath::Level::Portable => {}
    }
    let [mut s0, mut s1, mut s2, mut s3] = *state;
    for chunk in out.chunks_exact_mut(LANES) {
        for l in 0..LANES {
            chunk[l] = s0[l]
                .wrapping_add(s3[l])
                .rotate_left(23)
                .wrapping_add(s0[l]);
            let t = s1[l] << 17;
            s2[l] ^= s0[l];
            s3[l] ^= s1[l];
            s1[l] ^= s2[l];
            s0[l] ^= s3[l];
            s2[l] ^= t;
            s3[l] = s3[l].rotate_left(45);
        }
    }
    *state = [s0, s1, s2, s3];
}

/// The vector refills: four xoshiro256++ lanes in one 256-bit register per state word, the
/// same integer operations as the portable refill (so the same stream), written once and
/// compiled for AVX2 and for AVX-512 VL, whose 64-bit rotate (`vprolq`) is one instruction
/// instead of two shifts and an or on the refill's serial chain.
#[cfg(target_arch = "x86_64")]
mod vector {
    use std::arch::x86_64::*;

    use super::{BLOCK, LANES};

    /// The refill with the rotations `rot23` and `rot45` (left by 23 and by 45 bits).
    ///
    /// # Safety
    /// The CPU must have AVX2 (the caller's target features, into which this is inlined).
    #[inline(always)]
    unsafe fn refill_with(
        state: &mut [[u64; LANES]; 4],
        out: &mut [u64; BLOCK],
        rot23: impl Fn(__m256i) -> __m256i,
        rot45: impl Fn(__m256i) -> __m256i,
    ) {
        // SAFETY (all loads/stores): each `[u64; 4]` is exactly one 256-bit register, and `out`
        // has BLOCK = 16 · 4 values.
        unsafe {
            let load = |w: &[u64; LANES]| _mm256_loadu_si256(w.as_ptr().cast());
            let (mut s0, mut s1, mut s2, mut s3) = (
                load(&state[0]),
                load(&state[1]),
                load(&state[2]),
                load(&state[3]),
            );
            for chunk in out.chunks_exact_mut(LANES) {
                let result = _mm256_add_epi64(rot23(_mm256_add_epi64(s0, s3)), s0);
                _mm256_storeu_si256(chunk.as_mut_ptr().cast(), result);
                let t = _mm256_slli_epi64::<17>(s1);
                s2 = _mm256_xor_si256(s2, s0);
                s3 = _mm256_xor_si256(s3, s1);
                s1 = _mm256_xor_si256(s1, s2);
                s0 = _mm256_xor_si256(s0, s3);
                s2 = _mm256_xor_si256(s2, t);
                s3 = rot45(s3);
            }
            for (w, v) in state.iter_mut().zip([s0, s1, s2, s3]) {
                _mm256_storeu_si256(w.as_mut_ptr().cast(), v);
            }
        }
    }

    /// The AVX2 refill: rotations as two shifts and an or.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn refill_avx2(state: &mut [[u64; LANES]; 4], out: &mut [u64; BLOCK]) {
        // SAFETY: this function has AVX2.
        unsafe {
            refill_with(
                state,
                out,
                |x| _mm256_or_si256(_mm256_slli_epi64::<23>(x), _mm256_srli_epi64::<41>(x)),
                |x| _mm256_or_si256(_mm256_slli_epi64::<45>(x), _mm256_srli_epi64::<19>(x)),
            );
        }
    }

    /// The AVX-512 VL refill: rotations by `vprolq`.
    #[target_feature(enable = "avx512f,avx512vl,avx2")]
    pub(super) unsafe fn refill_avx512(state: &mut [[u64; LANES]; 4], out: &mut [u64; BLOCK]) {
        // SAFETY: this function has AVX2 and AVX-512 VL.
        unsafe {
            refill_with(
                state,
                out,
                |x| _mm256_rol_epi64::<23>(x),
                |x| _mm256_rol_epi64::<45>(x),
            );
        }
    }
}

impl RngCore for FastRng {
    #[inline]
    fn next_u64(&mut self) -> u64 {
        if self.next == BLOCK {
            self.refill();
        }
        let v = self.buffer[self.next];
        self.next += 1;
        v
    }

    #[inline]
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Copies whole runs of the buffer (little-endian), so that `rng.fill(&mut [u32])` costs a
    /// copy rather than a call per value; the bytes are those of successive `next_u64`s.
    fn fill_bytes(&mut self, mut dst: &mut [u8]) {
        while dst.len() >= 8 {
            if self.next == BLOCK {
                self.refill();
            }
            let n = (BLOCK - self.next).min(dst.len() / 8);
            let (head, tail) = dst.split_at_mut(n * 8);
            for (bytes, v) in head
                .chunks_exact_mut(8)
                .zip(&self.buffer[self.next..self.next + n])
            {
                bytes.copy_from_slice(&v.to_le_bytes());
            }
            self.next += n;
            dst = tail;
        }
        if !dst.is_empty() {
            let bytes = self.next_u64().to_le_bytes();
            let len = dst.len();
            dst.copy_from_slice(&bytes[..len]);
        }
    }
}

impl SeedableRng for FastRng {
    type Seed = [u8; 32];

    fn from_seed(seed: Self::Seed) -> Self {
        let mut mix = seed.chunks_exact(8).fold(0u64, |acc, c| {
            splitmix64(acc ^ u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        });
        let mut state = [[0u64; LANES]; 4];
        for lane in 0..LANES {
            for word in state.iter_mut() {
                mix = mix.wrapping_add(0x9E37_79B9_7F4A_7C15);
                word[lane] = splitmix64(mix);
            }
        }
        Self {
            state,
            buffer: [0; BLOCK],
            next: BLOCK,
        }
    }
}

/// One step of SplitMix64 (Steele, Lea, Flood 2014) as a mixing function.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    #[test]
    fn each_lane_is_xoshiro256plusplus() {
        // Lane 0's outputs (every 4th value) equal a scalar xoshiro256++ from lane 0's state.
        use rand::SeedableRng;
        let mut fast = super::FastRng::seed_from_u64(9);
        let s: [u64; 4] = [
            fast.state[0][0],
            fast.state[1][0],
            fast.state[2][0],
            fast.state[3][0],
        ];
        let mut bytes = [0u8; 32];
        for (i, w) in s.iter().enumerate() {
            bytes[i * 8..(i + 1) * 8].copy_from_slice(&w.to_le_bytes());
        }
        let mut scalar = rand_xoshiro::Xoshiro256PlusPlus::from_seed(bytes);
        for _ in 0..100 {
            let v = fast.random::<u64>();
            for _ in 0..3 {
                fast.random::<u64>();
            }
            assert_eq!(v, scalar.random::<u64>());
        }
    }

    #[test]
    fn fill_bytes_is_the_stream_of_next_u64() {
        use rand::{RngCore, SeedableRng};
        let (mut a, mut b) = (
            super::FastRng::seed_from_u64(4),
            super::FastRng::seed_from_u64(4),
        );
        a.next_u64(); // start mid-block
        b.next_u64();
        let mut bytes = [0u8; 8 * 150 + 3];
        a.fill_bytes(&mut bytes);
        for chunk in bytes.chunks(8) {
            let v = b.next_u64().to_le_bytes();
            assert_eq!(chunk, &v[..chunk.len()]);
        }
    }

    #[test]
    fn refill_is_the_same_on_every_path() {
        // The AVX-512 and AVX2 refills against the portable one (each forced in turn), bit for bit.
        use crate::fastmath::{available_levels, with_cap};
        use rand::SeedableRng;
        let first: Vec<u64> = with_cap(Some(crate::fastmath::Level::Portable), || {
            let mut r = super::FastRng::seed_from_u64(11);
            (0..1000).map(|_| r.random::<u64>()).collect()
        });
        for level in available_levels() {
            let other: Vec<u64> = with_cap(Some(level), || {
                let mut r = super::FastRng::seed_from_u64(11);
                (0..1000).map(|_| r.random::<u64>()).collect()
            });
            assert_eq!(first, other, "{level:?}");
        }
    }

    #[test]
    fn streams_differ_and_repeat() {
        let first = |seed, s| super::stream(seed, s).random::<u64>();
        assert_eq!(first(1, 2), first(1, 2));
        assert_ne!(first(1, 2), first(1, 3));
        assert_ne!(first(1, 2), first(2, 2));
    }
}

/// Fast standard normal draws: the 128-layer ziggurat of Marsaglia & Tsang (2000) in
/// Doornik's ZIGNOR form (2005), using one `u64` per draw on the fast path (~99% of draws):
/// the low 7 bits pick the layer, the top 52 bits give a uniform on `(−1, 1)`.
///
/// `rand_distr::StandardNormal` is also a ziggurat, but through generic closures that the
/// compiler does not flatten; this one is about twice as fast in the Fig. 2 loop, which spends
/// most of its time here.
///
/// # References
/// [^1]: Marsaglia & Tsang (2000), *The ziggurat method for generating random variables*, JSS 5(8).
/// [^2]: Doornik (2005), *An improved ziggurat method to generate normal random samples*.
pub mod normal {
    use std::sync::LazyLock;

    use rand::Rng;

    const LAYERS: usize = 128;
    /// Start of the right tail.
    const R: f64 = 3.442_619_855_899;
    /// Area of each layer.
    const V: f64 = 9.912_563_035_262_17e-3;

    struct Tables {
        /// Layer edges `x_i`, `x_0 = V/f(R)` (the base strip's virtual width), `x_1 = R`,
        /// `x_128 = 0`.
        x: [f64; LAYERS + 1],
        /// `x_{i+1}/x_i`: below it a draw is inside the layer's rectangle.
        ratio: [f64; LAYERS],
    }

    static TABLES: LazyLock<Tables> = LazyLock::new(|| {
        let mut x = [0.0; LAYERS + 1];
        let mut f = (-0.5 * R * R).exp();
        x[0] = V / f;
        x[1] = R;
        for i in 2..LAYERS {
            x[i] = (-2.0 * (V / x[i - 1] + f).ln()).sqrt();
            f = (-0.5 * x[i] * x[i]).exp();
        }
        x[LAYERS] = 0.0;
        let mut ratio = [0.0; LAYERS];
        for i in 0..LAYERS {
            ratio[i] = x[i + 1] / x[i];
        }
        Tables { x, ratio }
    });

    /// A uniform on `[−1, 1)` from the top 52 bits of `bits`.
    #[inline(always)]
    fn signed_unit(bits: u64) -> f64 {
        f64::from_bits(0x4000_0000_0000_0000 | (bits >> 12)) - 3.0
    }

    /// One draw from `N(0, 1)`.
    #[inline]
    pub fn sample<R: Rng + ?Sized>(rng: &mut R) -> f64 {
        draw(&TABLES, rng)
    }

    /// Fills `out` with independent `N(0, 1)` draws.
    pub fn fill<R: Rng + ?Sized>(rng: &mut R, out: &mut [f64]) {
        let tables = &*TABLES;
        for o in out {
            *o = draw(tables, rng);
        }
    }

    #[inline(always)]
    fn draw<G: Rng + ?Sized>(t: &Tables, rng: &mut G) -> f64 {
        loop {
            let bits = rng.next_u64();
            let i = (bits & (LAYERS as u64 - 1)) as usize;
            let u = signed_unit(bits);
            if u.abs() < t.ratio[i] {
                return u * t.x[i];
            }
            if let Some(z) = slow(t, rng, i, u) {
                return z;
            }
        }
    }

    /// The rare cases: the base strip's tail, or a wedge between a layer and the density.
    #[cold]
    #[inline(never)]
    fn slow<G: Rng + ?Sized>(t: &Tables, rng: &mut G, i: usize, u: f64) -> Option<f64> {
        if i == 0 {
            // Marsaglia's tail algorithm beyond R.
            loop {
                let a: f64 = 1.0 - rng.random::<f64>();
                let b: f64 = 1.0 - rng.random::<f64>();
                let x = a.ln() / R;
                let y = b.ln();
                if -2.0 * y >= x * x {
                    return Some(if u < 0.0 { x - R } else { R - x });
                }
            }
        }
        let x = u * t.x[i];
        let f0 = (-0.5 * (t.x[i] * t.x[i] - x * x)).exp();
        let f1 = (-0.5 * (t.x[i + 1] * t.x[i + 1] - x * x)).exp();
        (f1 + rng.random::<f64>() * (f0 - f1) < 1.0).then_some(x)
    }

    #[cfg(test)]
    mod tests {
        use rand::SeedableRng;

        /// The standard normal CDF, via the complementary error function of `libm`-free
        /// quadrature: Φ(z) = ½ + ∫₀ᶻ φ.
        fn phi(z: f64) -> f64 {
            let half = crate::quadrature::integrate(
                |s| (-0.5 * s * s).exp() / (2.0 * std::f64::consts::PI).sqrt(),
                0.0,
                z.abs(),
                1e-12,
            );
            if z >= 0.0 {
                0.5 + half
            } else {
                0.5 - half
            }
        }

        #[test]
        fn draws_follow_the_standard_normal() {
            let n = 1 << 20;
            let mut rng = crate::rng::FastRng::seed_from_u64(123);
            let mut z = vec![0.0; n];
            super::fill(&mut rng, &mut z);
            // Moments within 5 standard errors: SE(mean) = 1/√n, SE(var) = √(2/n), SE(kurt) ≈ √(96/n).
            let nf = n as f64;
            let m = z.iter().sum::<f64>() / nf;
            let v = z.iter().map(|x| x * x).sum::<f64>() / nf;
            let k = z.iter().map(|x| x.powi(4)).sum::<f64>() / nf;
            assert!(m.abs() < 5.0 / nf.sqrt(), "mean {m}");
            assert!((v - 1.0).abs() < 5.0 * (2.0 / nf).sqrt(), "var {v}");
            assert!((k - 3.0).abs() < 5.0 * (96.0 / nf).sqrt(), "kurtosis {k}");
            // Tail mass beyond the ziggurat's base R exercises the slow path: binomial, 5 SE.
            let p = 2.0 * (1.0 - phi(super::R));
            let tail = z.iter().filter(|x| x.abs() > super::R).count() as f64 / nf;
            assert!(
                (tail - p).abs() < 5.0 * (p * (1.0 - p) / nf).sqrt(),
                "tail {tail} vs {p}"
            );
            // Kolmogorov–Smirnov on a subsample: critical value 1.95/√m is the 0.1% level.
            let mut s: Vec<f64> = z.iter().step_by(64).copied().collect();
            s.sort_by(f64::total_cmp);
            let mf = s.len() as f64;
            let d = s
                .iter()
                .enumerate()
                .map(|(i, &x)| {
                    let f = phi(x);
                    (f - i as f64 / mf)
                        .abs()
                        .max(((i + 1) as f64 / mf - f).abs())
                })
                .fold(0.0, f64::max);
            assert!(d < 1.95 / mf.sqrt(), "KS statistic {d}");
        }
    }
}
