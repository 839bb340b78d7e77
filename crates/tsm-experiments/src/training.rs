//! Shared code of the training binaries (`train`, `sbi`, `sample`, `likelihood`,
//! `fig5_training`, `bench_train`): CPU tuning at start-up, opening a checkpoint for
//! evaluation, a progress bar, a run folder's `loss.csv` and `--force` rules, and the
//! samples-against-density plot. (The flags'
//! values parse through the libraries' own types with [`crate::cli::choice`].)
//!
//! **CPU tuning** ([`tune_cpu`], see `docs/training.md`): glibc returns freed 256 KB tensors to
//! the OS, costing ~1,250 page faults per training step; raising `M_MMAP_THRESHOLD`,
//! `M_TRIM_THRESHOLD` and `M_TOP_PAD` keeps them in the heap (≈ 1.8× on the training step).
//! `RAYON_NUM_THREADS=1` (unless the user set it) keeps candle's matmuls single-threaded,
//! because the CPU engine already runs two half-batches on the two cores.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use tsm_core::target::LogDensity;
use tsm_nn::candle::Device;
use tsm_nn::checkpoint::{self, CheckpointRecord};
use tsm_nn::engine::NamedState;
use tsm_nn::io::write_atomic;
use tsm_nn::loss::BatchSource;
use tsm_nn::{ScoreModel, Trainer};
use tsm_targets::GaussianMixture;

use crate::plot::{plot_err, Figure, FONT, PALETTE};

/// Allocator and thread settings for the training binaries; call first thing in `main`,
/// before any other thread exists.
pub fn tune_cpu() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
        }
        const M_TRIM_THRESHOLD: std::ffi::c_int = -1;
        const M_TOP_PAD: std::ffi::c_int = -2;
        const M_MMAP_THRESHOLD: std::ffi::c_int = -3;
        // SAFETY: mallopt is glibc's documented tuning call; these parameters only change
        // when memory is returned to the OS, and nothing else is allocating yet.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 64 << 20);
            mallopt(M_TRIM_THRESHOLD, 256 << 20);
            mallopt(M_TOP_PAD, 64 << 20);
        }
    }
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // Single-threaded process at this point (called first in main).
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
}

/// A checkpoint opened for evaluation (`sample`, `likelihood`): its record, the named target
/// it was trained on, and its weights.
#[derive(Debug)]
pub struct TrainedRun {
    /// The checkpoint's record (configuration, step, loss).
    pub record: CheckpointRecord,
    /// The target named in the record.
    pub target: GaussianMixture,
    state: NamedState,
}

impl TrainedRun {
    /// Loads the checkpoint in `dir` (verified) and looks up its target; errors name
    /// `--checkpoint`.
    ///
    /// # Errors
    /// A missing or damaged checkpoint, or a target name this build does not know.
    pub fn open(dir: &Path) -> Result<Self> {
        let (record, state) = checkpoint::load(dir).context("--checkpoint")?;
        let name = &record.config.target;
        let target = tsm_targets::named::by_name(name)
            .with_context(|| format!("--checkpoint: its target `{name}`"))?;
        Ok(Self {
            record,
            target,
            state,
        })
    }

    /// The score model on `device`, with the EMA of the weights (`ema`) or the raw weights.
    ///
    /// # Errors
    /// Device errors.
    pub fn model(&self, ema: bool, device: &Device) -> Result<ScoreModel> {
        let weights = if ema {
            self.state.ema()
        } else {
            self.state.params()
        };
        Ok(tsm_nn::train::model_from_named(
            &self.record.config.model,
            weights,
            device,
        )?)
    }
}

/// A progress bar with steps/s and the running loss (hidden when stderr is not a terminal).
pub fn progress_bar(total: u64, done: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_position(done);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {pos}/{len} steps, {per_sec}, loss {msg} (eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Runs `trainer` to its last step with a progress bar (steps/s, running loss), appending
/// `step,loss` every 10th step to the existing `loss_path` (one write per row, so that a
/// killed process leaves whole rows) and checkpointing into `out`.
///
/// # Errors
/// The trainer's errors (divergence, I/O, device), then a failed `loss.csv` write.
pub fn run_logged<T, S: BatchSource>(
    trainer: &mut Trainer<'_, T, S>,
    out: &Path,
    loss_path: &Path,
) -> Result<()> {
    let mut loss_csv = std::fs::OpenOptions::new()
        .append(true)
        .open(loss_path)
        .with_context(|| format!("opening {}", loss_path.display()))?;
    let bar = progress_bar(trainer.config().steps, trainer.step());
    let mut running = None::<f64>;
    let mut io_error = None;
    let result = trainer.run(Some(out), |step, loss| {
        running = Some(running.map_or(loss, |r| 0.99 * r + 0.01 * loss));
        if step % 10 == 0 {
            bar.set_position(step);
            bar.set_message(format!("{:.4}", running.unwrap_or(loss)));
            if let Err(e) = loss_csv.write_all(format!("{step},{loss}\n").as_bytes()) {
                io_error.get_or_insert(e);
            }
        }
    });
    bar.abandon();
    result?;
    match io_error {
        Some(e) => Err(e).context("writing loss.csv"),
        None => Ok(()),
    }
}

/// Samples drawn against the target density: a scatter over density contours in 2-D, a
/// histogram against the density curve in 1-D.
#[derive(Debug)]
pub struct SamplesPlot<'a> {
    /// Title.
    pub title: String,
    /// Row-major samples.
    pub samples: &'a [f64],
    /// The target.
    pub target: &'a GaussianMixture,
}

impl Figure for SamplesPlot<'_> {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let d = tsm_core::target::Dim::dim(self.target);
        let density = |x: &[f64]| self.target.log_density(x).exp();
        match d {
            1 => {
                let (lo, hi) = (-3.5, 3.5);
                let bins = 70;
                let width = (hi - lo) / bins as f64;
                let mut counts = vec![0usize; bins];
                for &x in self.samples {
                    if (lo..hi).contains(&x) {
                        counts[((x - lo) / width) as usize] += 1;
                    }
                }
                let norm = self.samples.len() as f64 * width;
                let curve: Vec<(f64, f64)> = (0..=400)
                    .map(|i| {
                        let x = lo + (hi - lo) * i as f64 / 400.0;
                        (x, density(&[x]))
                    })
                    .collect();
                let ymax = counts
                    .iter()
                    .map(|&c| c as f64 / norm)
                    .fold(0.0, f64::max)
                    .max(curve.iter().map(|p| p.1).fold(0.0, f64::max))
                    * 1.1;
                let mut chart = ChartBuilder::on(area)
                    .caption(&self.title, (FONT, 18))
                    .margin(10)
                    .x_label_area_size(35)
                    .y_label_area_size(50)
                    .build_cartesian_2d(lo..hi, 0.0..ymax)
                    .map_err(plot_err)?;
                chart
                    .configure_mesh()
                    .x_desc("x")
                    .y_desc("density")
                    .light_line_style(WHITE.mix(0.0))
                    .label_style((FONT, 13))
                    .draw()
                    .map_err(plot_err)?;
                chart
                    .draw_series(counts.iter().enumerate().map(|(i, &c)| {
                        let x0 = lo + i as f64 * width;
                        Rectangle::new(
                            [(x0, 0.0), (x0 + width, c as f64 / norm)],
                            PALETTE[0].mix(0.5).filled(),
                        )
                    }))
                    .map_err(plot_err)?;
                chart
                    .draw_series(LineSeries::new(curve, PALETTE[1].stroke_width(2)))
                    .map_err(plot_err)?;
            }
            _ => {
                let (lo, hi) = (-6.5, 6.5);
                let mut chart = ChartBuilder::on(area)
                    .caption(&self.title, (FONT, 18))
                    .margin(10)
                    .x_label_area_size(35)
                    .y_label_area_size(45)
                    .build_cartesian_2d(lo..hi, lo..hi)
                    .map_err(plot_err)?;
                chart
                    .configure_mesh()
                    .x_desc("x₁")
                    .y_desc("x₂")
                    .light_line_style(WHITE.mix(0.0))
                    .label_style((FONT, 13))
                    .draw()
                    .map_err(plot_err)?;
                // Density as shaded cells (first two coordinates, others at 0).
                let cells = 80;
                let w = (hi - lo) / cells as f64;
                let mut pts = vec![0.0; d];
                let mut grid = Vec::with_capacity(cells * cells);
                let mut max = 0.0f64;
                for i in 0..cells {
                    for j in 0..cells {
                        pts[0] = lo + (i as f64 + 0.5) * w;
                        pts[1] = lo + (j as f64 + 0.5) * w;
                        let p = density(&pts);
                        max = max.max(p);
                        grid.push((i, j, p));
                    }
                }
                chart
                    .draw_series(
                        grid.into_iter()
                            .filter(|c| c.2 > 1e-3 * max)
                            .map(|(i, j, p)| {
                                let (x0, y0) = (lo + i as f64 * w, lo + j as f64 * w);
                                let shade = (p / max).sqrt();
                                Rectangle::new(
                                    [(x0, y0), (x0 + w, y0 + w)],
                                    PALETTE[1].mix(0.6 * shade).filled(),
                                )
                            }),
                    )
                    .map_err(plot_err)?;
                chart
                    .draw_series(
                        self.samples
                            .chunks_exact(d)
                            .filter(|x| (lo..hi).contains(&x[0]) && (lo..hi).contains(&x[1]))
                            .take(5000)
                            .map(|x| Circle::new((x[0], x[1]), 1, PALETTE[0].mix(0.6).filled())),
                    )
                    .map_err(plot_err)?;
            }
        }
        Ok(())
    }
}

/// Refuses a fresh run into `out` when it already holds one (a `checkpoint.json`, readable or
/// not), unless `force`.
///
/// # Errors
/// The run found, with what to do instead (`--resume` or `--force`).
pub fn refuse_existing_run(out: &Path, force: bool) -> Result<()> {
    if force {
        return Ok(());
    }
    if let Ok(record) = checkpoint::read_record(out) {
        anyhow::bail!(
            "--out {} holds a run (step {} of {}); continue it with --resume, or replace it \
             with --force",
            out.display(),
            record.step,
            record.config.steps
        );
    }
    if out.join(checkpoint::RECORD_FILE).exists() {
        anyhow::bail!(
            "--out {} holds an unreadable checkpoint.json; replace the run with --force",
            out.display()
        );
    }
    Ok(())
}

/// Prepares the run folder `out` and returns its `loss.csv`: on resume from step `from`,
/// removes what an interrupted run left and cuts `loss.csv` back to that step; for a fresh
/// run, removes the old run (`force`), creates the folder and starts `loss.csv` over.
///
/// # Errors
/// I/O, naming the file.
pub fn prepare_run_dir(out: &Path, resumed_from: Option<u64>, force: bool) -> Result<PathBuf> {
    let loss_path = out.join("loss.csv");
    if let Some(from) = resumed_from {
        for f in checkpoint::remove_leftovers(out)? {
            tracing::info!(file = %f.display(), "removed a leftover of an interrupted run");
        }
        truncate_loss_csv(&loss_path, from)?;
    } else {
        if force {
            remove_run(out)?;
        }
        std::fs::create_dir_all(out)
            .with_context(|| format!("--out {}: cannot create", out.display()))?;
        tsm_nn::io::remove_stale_temps(out)?;
        write_atomic(&loss_path, b"step,loss\n")?;
    }
    Ok(loss_path)
}

/// Cuts `loss.csv` back to the rows of steps `≤ step` (a run killed after its last checkpoint
/// wrote rows that the resumed run writes again); creates it with its header if missing.
///
/// # Errors
/// I/O.
fn truncate_loss_csv(path: &Path, step: u64) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut kept = String::from("step,loss\n");
    for line in text.lines().skip(1) {
        // Whole, well-formed rows only (a row cut by a kill has a step past the checkpoint's
        // or fails to parse).
        let row = line
            .split_once(',')
            .and_then(|(s, l)| Some((s.parse::<u64>().ok()?, l.parse::<f64>().ok()?)));
        if row.is_some_and(|(s, _)| s <= step) {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    if kept != text {
        write_atomic(path, kept.as_bytes())?;
    }
    Ok(())
}

/// Deletes the run in `dir` (`--force`): its record first (the commit point), then its tensor
/// files, `loss.csv` and stale temporary files.
///
/// # Errors
/// A file that cannot be removed.
fn remove_run(dir: &Path) -> Result<()> {
    let record = dir.join(checkpoint::RECORD_FILE);
    if record.exists() {
        std::fs::remove_file(&record)
            .with_context(|| format!("--force: removing {}", record.display()))?;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if (name.starts_with("step_") && name.ends_with(".safetensors")) || name == "loss.csv" {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("--force: removing {}", entry.path().display()))?;
        }
    }
    Ok(())
}
