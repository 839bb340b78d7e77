//! Choosing a device: `cpu` (always), `cuda` and `metal` (only when the crate was built with
//! the cargo feature of that name).

use std::fmt;
use std::str::FromStr;

use candle::Device;
use tsm_core::choice::{unknown, Choice};

use crate::{Error, Result};

/// A device to train or sample on, by name (a [`Choice`]): `cpu`, `cuda`, `metal`, or
/// `cuda:N` / `metal:N` for GPU `N` (the PyTorch spelling; `cuda` is `cuda:0`).
///
/// Parsing accepts every name whatever the build; [`DeviceKind::open`] is where a device
/// whose cargo feature was not built is refused, with a message that names the feature.
///
/// ```
/// use tsm_nn::DeviceKind;
/// let cpu: DeviceKind = "cpu".parse()?;
/// assert!(cpu.open()?.is_cpu());
/// assert_eq!("cuda:1".parse::<DeviceKind>()?, DeviceKind::Cuda { ordinal: 1 });
/// assert!("tpu".parse::<DeviceKind>().is_err()); // lists the valid names
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeviceKind {
    /// The CPU (always available).
    #[default]
    Cpu,
    /// A CUDA GPU (needs the `cuda` feature).
    Cuda {
        /// Which GPU (`0` for `cuda`).
        ordinal: usize,
    },
    /// A Metal GPU (needs the `metal` feature).
    Metal {
        /// Which GPU (`0` for `metal`).
        ordinal: usize,
    },
}

impl DeviceKind {
    /// Short name, without the ordinal (`cpu`, `cuda`, `metal`): also the cargo feature.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda { .. } => "cuda",
            Self::Metal { .. } => "metal",
        }
    }

    /// Whether this build has the device's backend (`cpu` always; `cuda`/`metal` with the
    /// cargo feature of that name). A compiled backend may still fail to open (no GPU).
    pub fn is_compiled(&self) -> bool {
        match self {
            Self::Cpu => true,
            Self::Cuda { .. } => cfg!(feature = "cuda"),
            Self::Metal { .. } => cfg!(feature = "metal"),
        }
    }

    /// Opens the candle device.
    ///
    /// # Errors
    /// [`Error::Device`] for `cuda`/`metal` when this build lacks the feature (the message
    /// names it: `--features tsm-nn/cuda`), or when the device cannot be opened.
    pub fn open(&self) -> Result<Device> {
        let err = |reason: String| Error::Device {
            name: self.to_string(),
            reason,
        };
        if !self.is_compiled() {
            let kind = self.name();
            return Err(err(format!(
                "this build has no `{kind}` support; rebuild with `--features tsm-nn/{kind}` \
                 (or `--features {kind}` on tsm-experiments)"
            )));
        }
        match *self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda { ordinal } => Device::new_cuda(ordinal).map_err(|e| err(e.to_string())),
            Self::Metal { ordinal } => Device::new_metal(ordinal).map_err(|e| err(e.to_string())),
        }
    }
}

/// The device that the device-parameterised tests train and sample on: the device named by
/// the environment variable `TSM_TEST_DEVICE` (any [`DeviceKind`] name) if it is set, else the
/// first GPU backend compiled in (CUDA, then Metal), else the CPU.
///
/// So `cargo test-cuda` (an alias for `cargo test --workspace --features tsm-nn/cuda`) runs
/// those tests on GPU 0, `cargo test-metal` on the Metal GPU, and `TSM_TEST_DEVICE=cpu` forces
/// the CPU in either build.
///
/// # Errors
/// A `TSM_TEST_DEVICE` that is not a device name, or a device that cannot be opened.
pub fn test_device() -> Result<Device> {
    let kind = match std::env::var("TSM_TEST_DEVICE") {
        Ok(name) => name.parse::<DeviceKind>()?,
        Err(_) if cfg!(feature = "cuda") => DeviceKind::Cuda { ordinal: 0 },
        Err(_) if cfg!(feature = "metal") => DeviceKind::Metal { ordinal: 0 },
        Err(_) => DeviceKind::Cpu,
    };
    kind.open()
}

impl Choice for DeviceKind {
    const KIND: &'static str = "device";
    const NAMES: &'static [&'static str] = &["cpu", "cuda", "cuda:N", "metal", "metal:N"];
}

impl FromStr for DeviceKind {
    type Err = tsm_core::Error;

    /// # Errors
    /// [`tsm_core::Error::UnknownName`] listing the valid names (also for a bad ordinal).
    fn from_str(s: &str) -> Result<Self, tsm_core::Error> {
        let (name, ordinal) = match s.split_once(':') {
            None => (s, Some(0)),
            Some((name, n)) if !n.starts_with('+') => (name, n.parse::<usize>().ok()),
            Some((name, _)) => (name, None),
        };
        match (name, ordinal) {
            ("cpu", Some(0)) if !s.contains(':') => Ok(Self::Cpu),
            ("cuda", Some(ordinal)) => Ok(Self::Cuda { ordinal }),
            ("metal", Some(ordinal)) => Ok(Self::Metal { ordinal }),
            _ => Err(unknown::<Self>(s)),
        }
    }
}

impl fmt::Display for DeviceKind {
    /// `cpu`, `cuda`, `metal` for GPU 0, `cuda:N`, `metal:N` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Cuda { ordinal } | Self::Metal { ordinal } if ordinal != 0 => {
                write!(f, "{}:{ordinal}", self.name())
            }
            _ => f.write_str(self.name()),
        }
    }
}

tsm_core::serde_via_str!(DeviceKind);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_always_there_and_unknown_names_are_errors() {
        assert!(DeviceKind::Cpu.open().expect("cpu").is_cpu());
        let err = "tpu".parse::<DeviceKind>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown device `tpu`; valid names: cpu, cuda, cuda:N, metal, metal:N"
        );
        for bad in ["cpu:0", "cuda:", "cuda:x", "cuda:-1", "cuda:+1", "CPU", ""] {
            assert!(bad.parse::<DeviceKind>().is_err(), "{bad}");
        }
    }

    #[test]
    fn names_round_trip() {
        for d in [
            DeviceKind::Cpu,
            DeviceKind::Cuda { ordinal: 0 },
            DeviceKind::Cuda { ordinal: 3 },
            DeviceKind::Metal { ordinal: 0 },
            DeviceKind::Metal { ordinal: 1 },
        ] {
            assert_eq!(d.to_string().parse::<DeviceKind>().expect("parse"), d);
        }
        assert_eq!(DeviceKind::Cuda { ordinal: 0 }.to_string(), "cuda");
        assert_eq!(
            "cuda:0".parse::<DeviceKind>().expect("cuda:0"),
            DeviceKind::Cuda { ordinal: 0 }
        );
        for name in DeviceKind::NAMES {
            let name = name.replace(":N", ":1");
            assert!(name.parse::<DeviceKind>().is_ok(), "{name}");
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_names_it() {
        let cuda = DeviceKind::Cuda { ordinal: 0 };
        assert!(!cuda.is_compiled());
        let err = cuda.open().unwrap_err().to_string();
        assert!(err.contains("--features tsm-nn/cuda"), "{err}");
    }
}
