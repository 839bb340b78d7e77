//! The rotation group `SO(3)` with the metric `⟨A, B⟩ = ½ tr(AᵀB)`.
//!
//! ```text
//! hat(r) = [r]×,  exp(r) = I + sinc(θ)[r]× + ½ sinc²(θ/2)[r]×²,   θ = |r|
//! log(R): v = vee(R − Rᵀ) = 2 sin ω · a,  ω = atan2(|v|/2, (tr R − 1)/2) ∈ [0, π],
//!         r = ω v/|v|   (→ v/2 as ω → 0);
//!         near π (cos ω < −0.9) the axis from  ½(R + Rᵀ) − cos ω I = (1 − cos ω) a aᵀ,
//!         with the sign of a chosen so that a·v ≥ 0.
//! Ad_R v = R v.
//! ```
//! Near `π` the vector `v` is `O(π − ω)`, so its direction has relative error
//! `ε_mach/(π − ω)`: the symmetric part gives the axis to full precision instead.
//!
//! Tangent vectors are body coordinates (see the [parent module](super)): `ξ` at `R` stands
//! for `R [ξ]×`; spatial coordinates are `R ξ`.

use rand::Rng;

use super::{check_finite, check_len, LieError, LieGroup};
use crate::rng::normal;

/// A 3×3 matrix, row-major.
pub type Mat3 = [[f64; 3]; 3];

/// Tolerance on `max |RᵀR − I|` accepted by [`Rotation::from_matrix`].
pub const ORTHOGONALITY_TOLERANCE: f64 = 1e-9;

/// A rotation matrix (orthogonal, determinant +1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rotation(Mat3);

impl Rotation {
    /// The identity.
    pub const IDENTITY: Rotation = Rotation([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);

    /// Validates `m` as a rotation: finite entries, `max |mᵀm − I| ≤` [`ORTHOGONALITY_TOLERANCE`],
    /// `det m > 0`.
    ///
    /// # Errors
    /// [`LieError::NonFinite`] for a non-finite entry; [`LieError::NotRotation`] otherwise.
    ///
    /// ```
    /// use tsm_core::lie::so3::Rotation;
    /// let reflection = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]];
    /// assert!(Rotation::from_matrix(reflection).is_err());
    /// ```
    pub fn from_matrix(m: Mat3) -> Result<Self, LieError> {
        for row in &m {
            check_finite(row, "matrix entry")?;
        }
        let mtm = mul(&transpose(&m), &m);
        let mut err: f64 = 0.0;
        for i in 0..3 {
            for j in 0..3 {
                let target = if i == j { 1.0 } else { 0.0 };
                err = err.max((mtm[i][j] - target).abs());
            }
        }
        let det = det(&m);
        if err > ORTHOGONALITY_TOLERANCE || det <= 0.0 {
            return Err(LieError::NotRotation {
                orthogonality_error: err,
                det,
                tolerance: ORTHOGONALITY_TOLERANCE,
            });
        }
        Ok(Self(m))
    }

    /// The matrix, row-major.
    pub fn matrix(&self) -> &Mat3 {
        &self.0
    }

    /// `Rᵀ = R⁻¹`.
    pub fn transpose(&self) -> Rotation {
        Rotation(transpose(&self.0))
    }

    /// `R v`.
    pub fn apply(&self, v: &[f64; 3]) -> [f64; 3] {
        let m = &self.0;
        [
            m[0][0] * v[0] + m[0][1] * v[1] + m[0][2] * v[2],
            m[1][0] * v[0] + m[1][1] * v[1] + m[1][2] * v[2],
            m[2][0] * v[0] + m[2][1] * v[1] + m[2][2] * v[2],
        ]
    }

    /// `Rᵀ v`.
    pub fn apply_transpose(&self, v: &[f64; 3]) -> [f64; 3] {
        let m = &self.0;
        [
            m[0][0] * v[0] + m[1][0] * v[1] + m[2][0] * v[2],
            m[0][1] * v[0] + m[1][1] * v[1] + m[2][1] * v[2],
            m[0][2] * v[0] + m[1][2] * v[1] + m[2][2] * v[2],
        ]
    }

    /// The product `self · other`.
    pub fn mul(&self, other: &Rotation) -> Rotation {
        Rotation(mul(&self.0, &other.0))
    }

    /// `selfᵀ · other` (`self⁻¹ other`) without forming the transpose.
    pub fn tmul(&self, other: &Rotation) -> Rotation {
        Rotation(mul(&transpose(&self.0), &other.0))
    }

    /// The rotation vector `r = log R` (`|r| = ω ∈ [0, π]`), stable near `ω = π` (see the
    /// [module docs](self)).
    pub fn log(&self) -> [f64; 3] {
        let m = &self.0;
        let v = [m[2][1] - m[1][2], m[0][2] - m[2][0], m[1][0] - m[0][1]];
        let nv = norm(&v);
        let c = 0.5 * (m[0][0] + m[1][1] + m[2][2] - 1.0);
        let omega = (0.5 * nv).atan2(c);
        if c >= -0.9 {
            // ω/(2 sin ω), sin ω = |v|/2; its Taylor series where sin ω underflows.
            let k = if nv < 1e-12 {
                0.5 * (1.0 + omega * omega / 6.0)
            } else {
                omega / nv
            };
            return [k * v[0], k * v[1], k * v[2]];
        }
        // ½(R + Rᵀ) − cos ω I = (1 − cos ω) a aᵀ: the column with the largest diagonal.
        let one_minus_c = 1.0 - c;
        let b = |i: usize, j: usize| 0.5 * (m[i][j] + m[j][i]) - if i == j { c } else { 0.0 };
        let i = (0..3)
            .max_by(|&p, &q| b(p, p).total_cmp(&b(q, q)))
            .unwrap_or(0);
        let scale = 1.0 / (b(i, i) * one_minus_c).sqrt();
        let mut a = [b(0, i) * scale, b(1, i) * scale, b(2, i) * scale];
        let na = norm(&a);
        a.iter_mut().for_each(|x| *x /= na);
        let sign = if a[0] * v[0] + a[1] * v[1] + a[2] * v[2] < 0.0 {
            -1.0
        } else {
            1.0
        };
        [
            sign * omega * a[0],
            sign * omega * a[1],
            sign * omega * a[2],
        ]
    }

    /// The rotation angle `ω = |log R| ∈ [0, π]` (the geodesic distance to `I`).
    pub fn angle(&self) -> f64 {
        let m = &self.0;
        let v = [m[2][1] - m[1][2], m[0][2] - m[2][0], m[1][0] - m[0][1]];
        let c = 0.5 * (m[0][0] + m[1][1] + m[2][2] - 1.0);
        (0.5 * norm(&v)).atan2(c)
    }

    /// A draw from the normalised Haar measure (a uniform unit quaternion).
    pub fn uniform<R: Rng + ?Sized>(rng: &mut R) -> Rotation {
        loop {
            let q = [
                normal::sample(rng),
                normal::sample(rng),
                normal::sample(rng),
                normal::sample(rng),
            ];
            let n2: f64 = q.iter().map(|x| x * x).sum();
            if n2 > 1e-12 {
                let n = n2.sqrt();
                return from_quaternion(q[0] / n, q[1] / n, q[2] / n, q[3] / n);
            }
        }
    }
}

/// `exp([r]×)` for a finite `r` (Rodrigues' formula).
pub fn exp(r: &[f64; 3]) -> Rotation {
    let theta2 = r[0] * r[0] + r[1] * r[1] + r[2] * r[2];
    let theta = theta2.sqrt();
    let a = sinc(theta);
    let half = sinc(0.5 * theta);
    let b = 0.5 * half * half;
    let k = hat(r);
    let k2 = mul(&k, &k);
    let mut m = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            m[i][j] = a * k[i][j] + b * k2[i][j] + if i == j { 1.0 } else { 0.0 };
        }
    }
    Rotation(m)
}

/// `[r]×`, the skew matrix with `[r]× u = r × u`.
pub fn hat(r: &[f64; 3]) -> Mat3 {
    [[0.0, -r[2], r[1]], [r[2], 0.0, -r[0]], [-r[1], r[0], 0.0]]
}

/// `sin x / x`, with its Taylor series near 0.
pub fn sinc(x: f64) -> f64 {
    if x.abs() < 1e-4 {
        let x2 = x * x;
        1.0 - x2 / 6.0 + x2 * x2 / 120.0
    } else {
        x.sin() / x
    }
}

fn from_quaternion(w: f64, x: f64, y: f64, z: f64) -> Rotation {
    Rotation([
        [
            1.0 - 2.0 * (y * y + z * z),
            2.0 * (x * y - w * z),
            2.0 * (x * z + w * y),
        ],
        [
            2.0 * (x * y + w * z),
            1.0 - 2.0 * (x * x + z * z),
            2.0 * (y * z - w * x),
        ],
        [
            2.0 * (x * z - w * y),
            2.0 * (y * z + w * x),
            1.0 - 2.0 * (x * x + y * y),
        ],
    ])
}

fn mul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut c = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            c[i][j] = a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j];
        }
    }
    c
}

fn transpose(a: &Mat3) -> Mat3 {
    let mut t = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            t[i][j] = a[j][i];
        }
    }
    t
}

fn det(m: &Mat3) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

pub(crate) fn norm(v: &[f64; 3]) -> f64 {
    (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
}

/// `SO(3)` as a [`LieGroup`], tangent vectors in body coordinates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct So3;

fn vec3(v: &[f64]) -> [f64; 3] {
    [v[0], v[1], v[2]]
}

impl LieGroup for So3 {
    type Element = Rotation;

    fn tangent_dim(&self) -> usize {
        3
    }

    fn identity(&self) -> Rotation {
        Rotation::IDENTITY
    }

    fn compose(&self, a: &Rotation, b: &Rotation) -> Rotation {
        a.mul(b)
    }

    fn inverse(&self, a: &Rotation) -> Rotation {
        a.transpose()
    }

    fn exp(&self, v: &[f64]) -> Result<Rotation, LieError> {
        check_len(3, v.len(), "So3::exp")?;
        check_finite(v, "tangent coordinate")?;
        Ok(exp(&vec3(v)))
    }

    fn log(&self, g: &Rotation, out: &mut [f64]) {
        out.copy_from_slice(&g.log());
    }

    fn adjoint(&self, g: &Rotation, v: &[f64], out: &mut [f64]) {
        out.copy_from_slice(&g.apply(&vec3(v)));
    }

    /// `Ad_{yᵀx} ξ = yᵀ(x ξ)`.
    fn transport(&self, x: &Rotation, y: &Rotation, xi: &[f64], out: &mut [f64]) {
        out.copy_from_slice(&y.apply_transpose(&x.apply(&vec3(xi))));
    }
}

impl super::sampler::HaarSample for So3 {
    /// A uniform rotation ([`Rotation::uniform`]: a uniform unit quaternion).
    fn uniform<R: Rng + ?Sized>(&self, rng: &mut R) -> Rotation {
        Rotation::uniform(rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn max_diff(a: &Rotation, b: &Rotation) -> f64 {
        let mut e: f64 = 0.0;
        for i in 0..3 {
            for j in 0..3 {
                e = e.max((a.0[i][j] - b.0[i][j]).abs());
            }
        }
        e
    }

    fn unit(v: [f64; 3]) -> [f64; 3] {
        let n = norm(&v);
        [v[0] / n, v[1] / n, v[2] / n]
    }

    #[test]
    fn exp_is_a_rotation_and_log_inverts_it_up_to_pi() {
        let axes = [
            unit([1.0, 2.0, -0.5]),
            [0.0, 0.0, 1.0],
            unit([-0.3, 0.9, 0.1]),
        ];
        let angles = [
            0.0,
            1e-12,
            1e-7,
            1e-4,
            0.3,
            1.0,
            2.5,
            3.0,
            PI - 1e-3,
            PI - 1e-6,
            PI - 1e-9,
            PI - 1e-12,
        ];
        for a in &axes {
            for &w in &angles {
                let r = [w * a[0], w * a[1], w * a[2]];
                let rot = exp(&r);
                assert!(
                    Rotation::from_matrix(rot.0).is_ok(),
                    "exp not a rotation at {w}"
                );
                let back = rot.log();
                let err = (0..3).map(|i| (back[i] - r[i]).abs()).fold(0.0, f64::max);
                // Near π the angle itself is determined only to ~ε_mach/sin ω ... but the
                // log is well-conditioned in this parameterisation: full precision expected.
                assert!(err < 1e-12, "angle {w}: log error {err:e}");
                assert!((rot.angle() - w).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn log_at_exactly_pi_gives_a_valid_log() {
        for a in [
            [1.0, 0.0, 0.0],
            unit([1.0, 1.0, 1.0]),
            unit([0.2, -0.7, 0.3]),
        ] {
            let rot = exp(&[PI * a[0], PI * a[1], PI * a[2]]);
            let r = rot.log();
            assert!((norm(&r) - PI).abs() < 1e-12);
            assert!(max_diff(&exp(&r), &rot) < 1e-12);
        }
    }

    #[test]
    fn exp_log_round_trip_on_random_rotations() {
        let mut rng = crate::rng::stream(11, 0);
        for _ in 0..2000 {
            let r = Rotation::uniform(&mut rng);
            assert!(Rotation::from_matrix(r.0).is_ok());
            assert!(max_diff(&exp(&r.log()), &r) < 1e-12);
        }
    }

    #[test]
    fn group_laws_and_adjoint() {
        let mut rng = crate::rng::stream(12, 0);
        let g = So3;
        for _ in 0..100 {
            let (a, b, c) = (
                Rotation::uniform(&mut rng),
                Rotation::uniform(&mut rng),
                Rotation::uniform(&mut rng),
            );
            assert!(
                max_diff(
                    &g.compose(&g.compose(&a, &b), &c),
                    &g.compose(&a, &g.compose(&b, &c))
                ) < 1e-14
            );
            assert!(max_diff(&g.compose(&a, &g.inverse(&a)), &g.identity()) < 1e-14);
            assert!(max_diff(&g.compose(&g.identity(), &a), &a) == 0.0);
            // exp(Ad_a v) = a exp(v) a⁻¹.
            let v = [0.3, -1.1, 0.7];
            let mut adv = [0.0; 3];
            g.adjoint(&a, &v, &mut adv);
            let lhs = exp(&adv);
            let rhs = a.mul(&exp(&v)).mul(&a.transpose());
            assert!(max_diff(&lhs, &rhs) < 1e-13);
            // exp(v) exp(−v) = I.
            assert!(
                max_diff(
                    &exp(&v).mul(&exp(&[-v[0], -v[1], -v[2]])),
                    &Rotation::IDENTITY
                ) < 1e-14
            );
        }
    }

    /// The transport of Prop. 3.2 in body coordinates: the curve x exp(sξ) x⁻¹y through y has
    /// body velocity transport(x, y, ξ) (checked by a central difference of log(yᵀ·curve)).
    #[test]
    fn transport_is_the_differential_of_right_multiplication() {
        let mut rng = crate::rng::stream(13, 0);
        let g = So3;
        for _ in 0..20 {
            let (x, y) = (Rotation::uniform(&mut rng), Rotation::uniform(&mut rng));
            let xi = [0.4, -0.2, 0.9];
            let mut t = [0.0; 3];
            g.transport(&x, &y, &xi, &mut t);
            let h = 1e-6;
            let curve = |s: f64| {
                let c = x
                    .mul(&exp(&[s * xi[0], s * xi[1], s * xi[2]]))
                    .mul(&x.tmul(&y));
                y.tmul(&c).log()
            };
            let (p, m) = (curve(h), curve(-h));
            for i in 0..3 {
                assert!(((p[i] - m[i]) / (2.0 * h) - t[i]).abs() < 1e-8);
            }
        }
    }

    #[test]
    fn bad_matrices_are_typed_errors() {
        let mut m = *Rotation::IDENTITY.matrix();
        m[0][1] = 1e-3;
        assert!(matches!(
            Rotation::from_matrix(m),
            Err(LieError::NotRotation { .. })
        ));
        let refl = [[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        assert!(matches!(
            Rotation::from_matrix(refl),
            Err(LieError::NotRotation { det, .. }) if det < 0.0
        ));
        let mut n = *Rotation::IDENTITY.matrix();
        n[2][2] = f64::NAN;
        assert!(matches!(
            Rotation::from_matrix(n),
            Err(LieError::NonFinite { .. })
        ));
        assert!(matches!(
            So3.exp(&[0.0, f64::NAN, 0.0]),
            Err(LieError::NonFinite { .. })
        ));
        assert!(matches!(
            So3.exp(&[0.0, 1.0]),
            Err(LieError::DimMismatch { .. })
        ));
        let e = Rotation::from_matrix(refl).unwrap_err().to_string();
        assert!(e.contains("det = -1"), "{e}");
    }
}
