//! Choosing a device by name: `cpu` (always), `cuda` and `metal` (only when the crate was
//! built with the cargo feature of that name).

use candle::Device;

use crate::{Error, Result};

/// The device names [`device`] accepts.
pub const DEVICE_NAMES: [&str; 3] = ["cpu", "cuda", "metal"];

/// The device called `name` (`cpu`, `cuda`, `metal`; `cuda:N` picks GPU `N`).
///
/// # Errors
/// [`Error::Device`] for an unknown name, or for `cuda`/`metal` when this build lacks the
/// feature (the message names the feature: `cargo build --features tsm-nn/cuda`), or when the
/// device cannot be opened.
///
/// # Examples
/// ```
/// assert!(tsm_nn::device("cpu").is_ok());
/// assert!(tsm_nn::device("tpu").is_err());
/// ```
pub fn device(name: &str) -> Result<Device> {
    let (kind, ordinal) = match name.split_once(':') {
        Some((k, n)) => (
            k,
            n.parse::<usize>().map_err(|_| Error::Device {
                name: name.to_owned(),
                reason: format!("`{n}` is not a device index"),
            })?,
        ),
        None => (name, 0),
    };
    let open_err = |e: candle::Error| Error::Device {
        name: name.to_owned(),
        reason: e.to_string(),
    };
    match kind {
        "cpu" => Ok(Device::Cpu),
        "cuda" if cfg!(feature = "cuda") => Device::new_cuda(ordinal).map_err(open_err),
        "metal" if cfg!(feature = "metal") => Device::new_metal(ordinal).map_err(open_err),
        "cuda" | "metal" => Err(Error::Device {
            name: name.to_owned(),
            reason: format!(
                "this build has no `{kind}` support; rebuild with `--features tsm-nn/{kind}` \
                 (or `--features {kind}` on tsm-experiments)"
            ),
        }),
        _ => Err(Error::Device {
            name: name.to_owned(),
            reason: format!("unknown device; valid: {}", DEVICE_NAMES.join(", ")),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_always_there_and_unknown_names_are_errors() {
        assert!(device("cpu").expect("cpu").is_cpu());
        let err = device("tpu").unwrap_err().to_string();
        assert!(err.contains("valid: cpu, cuda, metal"), "{err}");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_names_it() {
        let err = device("cuda").unwrap_err().to_string();
        assert!(err.contains("--features tsm-nn/cuda"), "{err}");
    }
}
