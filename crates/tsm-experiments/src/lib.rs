//! Shared plumbing for the figure binaries: command-line arguments common to every figure,
//! output folders, atomic CSV/JSON writing with a run record, tracing set-up, and plots that
//! render the same on any machine (a bundled font, no system fonts).
//!
//! Each binary in `src/bin/` reproduces one figure; `cargo xtask reproduce-figN` runs it.

pub mod bench;
pub mod cli;
pub mod estimator_variance;
pub mod loss_distribution;
pub mod ltsm;
pub mod output;
pub mod plot;
pub mod training;

pub use cli::FigureArgs;
pub use output::{OutputDir, RunRecord};

/// Initialises `tracing` once: `RUST_LOG` filters (default `info`), logs to stderr, in colour
/// only when stderr is a terminal and `NO_COLOR` is not set (a log file gets plain text).
pub fn init_tracing() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    // A second initialisation (in tests) is harmless: ignore its error.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .try_init();
}

/// The human-readable title of a named target, for plot panels.
pub fn target_title(name: &str) -> String {
    match name {
        "unit_gaussian" => "Unit Gaussian",
        "easy_mixture" => "Easy mixture",
        "hard_mixture_same_var" => "Hard mixture, same variance",
        "hard_mixture_diff_var" => "Hard mixture, different variance",
        "eight_modes" => "Eight modes on a circle",
        other => other,
    }
    .to_owned()
}
