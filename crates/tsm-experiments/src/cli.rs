//! Arguments shared by every figure binary (SPEC §5: `[--out DIR] [--seed S] [--quick]`).

use std::path::PathBuf;

/// `--out`, `--seed`, `--quick`: flatten into each figure's `clap` parser.
#[derive(Debug, Clone, clap::Args)]
pub struct FigureArgs {
    /// Output folder (created if missing) [default: results/<figure>]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Seed of every random stream; the same seed gives the same CSV on the same machine
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A reduced run for tests and smoke checks (fewer points and draws)
    #[arg(long)]
    pub quick: bool,
}

impl FigureArgs {
    /// The output folder: `--out`, or `results/<figure>` under the current directory.
    pub fn out_dir(&self, figure: &str) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| PathBuf::from("results").join(figure))
    }
}
