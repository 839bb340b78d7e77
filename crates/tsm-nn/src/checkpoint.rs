//! Checkpoints: one safetensors file with the parameters, their EMA and Adam's moments, and a
//! JSON record (`checkpoint.json`) with the configuration, the step and the file's length and
//! FNV-1a hash.
//!
//! Layout of a checkpoint folder:
//!
//! ```text
//! checkpoint.json              the commit point: names the current tensor file
//! step_00000200.safetensors    params `layers.ℓ.{weight,bias}` (and `mix_weight` for a
//!                              mix_learned run), `ema.…`, `adam_m.…`, `adam_v.…`
//! ```
//!
//! A save refuses a state with a NaN or an infinity, serialises the tensors in memory, builds
//! the JSON record and reads it back exactly as [`load`] will (parse, format, configuration
//! checks), so that a record the loader would reject is never committed; then it writes the
//! tensor file and the JSON, each atomically (a temporary `.NAME.PID.tmp`, see [`crate::io`],
//! then a rename), and only then removes the previous tensor file. A crash at any point
//! leaves a `checkpoint.json` that names a complete tensor file; what it may leave besides (a
//! temporary file, a tensor file no record names) [`remove_leftovers`] deletes. The random
//! state needs no saving: the
//! batch of step `k` is drawn from the stream `(seed, k)` (see [`crate::train`]), so
//! `(seed, step)` *is* the RNG state, and a resumed run continues bit-identically.
//!
//! Loading checks the JSON, the configuration ([`TrainConfig::validate`]), the tensor file's
//! length and hash, and every tensor's name and shape; anything wrong is an
//! [`Error::Checkpoint`], never a panic.
//!
//! ## Format versions
//! - 2: the configuration is self-contained ([`crate::config`]): the loss records its
//!   resolved identity by name (`"identity": "kappa_bar=0.25"`), its weighting and
//!   `σ_data²`; the model its parameterisation (`"preconditioned=8.25"`) and schedule
//!   (`"cosine"`) by name.
//! - 1: the loss kind and the variances were not recorded. This build does not read it (a
//!   one-line error says so); retrain, or load it with the build that wrote it.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use candle::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::engine::NamedState;
use crate::io::write_atomic;
use crate::{Error, Result};

/// The JSON file that commits a checkpoint.
pub const RECORD_FILE: &str = "checkpoint.json";
/// Version of the format (see the [module docs](self#format-versions)).
pub const FORMAT_VERSION: u32 = 2;

/// The JSON record of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// [`FORMAT_VERSION`].
    pub format: u32,
    /// Steps done.
    pub step: u64,
    /// The loss of the last step (`None` before the first).
    pub loss: Option<f64>,
    /// The full training configuration.
    pub config: TrainConfig,
    /// The tensor file, relative to the folder.
    pub file: String,
    /// Its length in bytes.
    pub bytes: u64,
    /// Its FNV-1a 64-bit hash, hexadecimal.
    pub fnv1a64: String,
}

/// FNV-1a, 64 bits (a corruption check, not a cryptographic hash).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// Saves `state` at `step` into folder `dir` (created if needed); returns the JSON's path.
///
/// # Errors
/// [`Error::Checkpoint`] for a state holding a NaN or an infinity, or a record that would
/// not load back (a non-finite number in it, say; nothing is committed then); I/O and
/// tensor errors.
pub fn save(
    dir: &Path,
    config: &TrainConfig,
    step: u64,
    loss: Option<f64>,
    state: &NamedState,
) -> Result<PathBuf> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let record_path = dir.join(RECORD_FILE);
    let mut map: HashMap<String, Tensor> = HashMap::new();
    for (prefix, named) in [
        ("", state.params()),
        ("ema.", state.ema()),
        ("adam_m.", state.adam_m()),
        ("adam_v.", state.adam_v()),
    ] {
        for (name, t) in named.iter() {
            let t = t.to_device(&Device::Cpu)?;
            let finite = t
                .flatten_all()?
                .to_dtype(candle::DType::F32)?
                .to_vec1::<f32>()?
                .iter()
                .all(|v| v.is_finite());
            if !finite {
                return Err(Error::checkpoint(
                    &record_path,
                    format!("not saved: tensor `{prefix}{name}` holds non-finite values"),
                ));
            }
            map.insert(format!("{prefix}{name}"), t);
        }
    }
    let file = format!("step_{step:08}.safetensors");
    let path = dir.join(&file);
    // Serialised in memory and written with `write_atomic`: safetensors' own file writer
    // goes through a randomly named temporary file (`.tmpXXXXXX`) that a killed process
    // would leave behind where `io::remove_stale_temps` cannot recognise it.
    let bytes = safetensors::tensor::serialize(&map, None)
        .map_err(|e| Error::checkpoint(&path, format!("not saved: {e}")))?;
    let record = CheckpointRecord {
        format: FORMAT_VERSION,
        step,
        loss,
        config: config.clone(),
        file: file.clone(),
        bytes: bytes.len() as u64,
        fnv1a64: format!("{:016x}", fnv1a64(&bytes)),
    };
    let json = serde_json::to_vec_pretty(&record)
        .map_err(|e| Error::checkpoint(&record_path, e.to_string()))?;
    // Read the record back as `load` will, before anything is committed.
    let back = parse_record(&record_path, &json).and_then(|back| {
        if back == record {
            Ok(())
        } else {
            Err(Error::checkpoint(
                &record_path,
                "the record does not read back as written (a non-finite number?)",
            ))
        }
    });
    if let Err(e) = back {
        return Err(match e {
            Error::Checkpoint { path, reason } => Error::Checkpoint {
                path,
                reason: format!("not saved: {reason}"),
            },
            other => other,
        });
    }
    write_atomic(&path, &bytes)?;
    let previous = read_record(dir).ok().map(|r| r.file);
    write_atomic(&record_path, &json)?;
    if let Some(old) = previous.filter(|old| *old != file) {
        // The new checkpoint is committed; a failure here only leaves a stale file.
        let _ = fs::remove_file(dir.join(old));
    }
    Ok(record_path)
}

/// Reads and parses `dir/checkpoint.json`.
///
/// # Errors
/// [`Error::Checkpoint`] when missing or not a valid record (unreadable JSON, another
/// format, or a configuration that [`TrainConfig::validate`] refuses).
pub fn read_record(dir: &Path) -> Result<CheckpointRecord> {
    let path = dir.join(RECORD_FILE);
    let text =
        fs::read(&path).map_err(|e| Error::checkpoint(&path, format!("cannot read: {e}")))?;
    parse_record(&path, &text)
}

/// Parses a record's bytes (read from `path`) and checks its configuration.
fn parse_record(path: &Path, text: &[u8]) -> Result<CheckpointRecord> {
    // The version first, so that an older record is named as such rather than reported as
    // a field it lacks.
    #[derive(Deserialize)]
    struct Version {
        format: u32,
    }
    let version: Version = serde_json::from_slice(text)
        .map_err(|e| Error::checkpoint(path, format!("not a valid checkpoint record: {e}")))?;
    if version.format != FORMAT_VERSION {
        return Err(Error::checkpoint(
            path,
            format!(
                "format {} is not readable by this build, which reads format {FORMAT_VERSION} \
                 (retrain, or use the tsm build that wrote it)",
                version.format
            ),
        ));
    }
    let record: CheckpointRecord = serde_json::from_slice(text)
        .map_err(|e| Error::checkpoint(path, format!("not a valid checkpoint record: {e}")))?;
    record
        .config
        .validate()
        .map_err(|e| Error::checkpoint(path, format!("invalid configuration: {e}")))?;
    Ok(record)
}

/// Removes what an interrupted save may leave in `dir`: temporary files of processes that
/// are gone ([`crate::io::remove_stale_temps`]) and tensor files (`step_N.safetensors`) that
/// the committed record does not name. Without a readable record no tensor file is touched.
/// Returns the files removed. Call it only on a folder no other process is saving into.
///
/// # Errors
/// [`Error::Io`] when `dir` cannot be listed.
pub fn remove_leftovers(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = crate::io::remove_stale_temps(dir)?;
    let Ok(record) = read_record(dir) else {
        return Ok(removed);
    };
    for entry in fs::read_dir(dir).map_err(io(dir))?.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let orphan = name.starts_with("step_")
            && name.ends_with(".safetensors")
            && name != record.file
            && entry.file_type().is_ok_and(|t| t.is_file());
        if orphan && fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed.sort();
    Ok(removed)
}

/// Loads the checkpoint in `dir`: its record and its state (on the CPU).
///
/// # Errors
/// [`Error::Checkpoint`] for a missing, truncated or corrupt file, or tensors that do not
/// match the recorded network.
pub fn load(dir: &Path) -> Result<(CheckpointRecord, NamedState)> {
    let record = read_record(dir)?;
    let path = dir.join(&record.file);
    let bytes =
        fs::read(&path).map_err(|e| Error::checkpoint(&path, format!("cannot read: {e}")))?;
    if bytes.len() as u64 != record.bytes {
        return Err(Error::checkpoint(
            &path,
            format!(
                "truncated or extended: {} bytes, expected {}",
                bytes.len(),
                record.bytes
            ),
        ));
    }
    let hash = format!("{:016x}", fnv1a64(&bytes));
    if hash != record.fnv1a64 {
        return Err(Error::checkpoint(
            &path,
            format!("corrupt: hash {hash}, expected {}", record.fnv1a64),
        ));
    }
    let mut map = candle::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| Error::checkpoint(&path, format!("unreadable tensors: {e}")))?;
    // The network's tensors, and a mix_learned run's learned weight.
    let shapes = crate::sbi::parameter_shapes(&record.config);
    let mut take = |prefix: &str| -> Result<Vec<(String, Tensor)>> {
        shapes
            .iter()
            .map(|(name, shape)| {
                let key = format!("{prefix}{name}");
                let t = map
                    .remove(&key)
                    .ok_or_else(|| Error::checkpoint(&path, format!("missing tensor `{key}`")))?;
                if t.dims() != shape.as_slice() {
                    return Err(Error::checkpoint(
                        &path,
                        format!(
                            "tensor `{key}` has shape {:?}, expected {shape:?}",
                            t.dims()
                        ),
                    ));
                }
                Ok((name.clone(), t))
            })
            .collect()
    };
    let state =
        NamedState::from_parts(take("")?, take("ema.")?, take("adam_m.")?, take("adam_v.")?);
    Ok((record, state))
}
