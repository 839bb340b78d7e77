//! Fig. 4 of *Target Score Matching* (De Bortoli et al. 2024, §4.1): the distribution of the loss at the
//! true score for 4 targets × 4 losses (DSM, TSM, κ, κ̄) × 4 weightings (original, DSM-optimal,
//! TSM-optimal, uniform): 10,000 estimates, each from 100 draws of `(t ~ U, x_0, x_t)`, cosine
//! schedule, `t ∈ [10⁻³, 1 − 10⁻³]`. Histograms on a log x-axis, one panel per
//! (weighting, target), the four losses overlaid.
//!
//! `cargo xtask reproduce-fig4 [--out DIR] [--seed S] [--quick]`
//!
//! Outputs: `fig4.csv` (one row per target × loss × weighting: n, mean, std_err, variance, min,
//! quantiles q01…q99, max, non_finite), `fig4_histograms.csv` (`target,loss,weighting,bin_lo,
//! bin_hi,count`), `fig4.svg`, `fig4.png`, `fig4.json`.

use clap::Parser;
use plotters::chart::SeriesLabelPosition;
use serde::Serialize;
use tsm_core::schedule::{AnySchedule, Cosine};
use tsm_core::weighting::{TimeRange, Weighting};
use tsm_experiments::loss_distribution::{compute, Sizes, Summary, LOSSES};
use tsm_experiments::output::RunTimer;
use tsm_experiments::plot::{save_svg_png, Panel, PanelGrid, Series};
use tsm_experiments::{init_tracing, target_title, FigureArgs, OutputDir};
use tsm_targets::named;

/// Reproduces Fig. 4: histograms of the loss at the true score (targets × losses × weightings).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: FigureArgs,
    /// Histogram bins per panel (log-spaced)
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(5..=1000))]
    bins: u32,
}

#[derive(Debug, Serialize)]
struct Bin {
    target: String,
    loss: &'static str,
    weighting: &'static str,
    bin_lo: f64,
    bin_hi: f64,
    count: usize,
}

#[derive(Debug, Serialize)]
struct Parameters {
    schedule: &'static str,
    time_range: (f64, f64),
    sizes: Sizes,
    bins: u32,
    targets: Vec<&'static str>,
    losses: [&'static str; 4],
    weightings: [&'static str; 4],
}

const LABELS: [&str; 4] = ["DSM", "TSM", "κ", "κ-bar"];

fn main() -> anyhow::Result<()> {
    init_tracing();
    let args = Args::parse();
    if args.common.dry_run(
        "fig4",
        format_args!("the loss distributions ({} bins)", args.bins),
    ) {
        return Ok(());
    }
    let out = OutputDir::create(args.common.out_dir("fig4"))?;
    let sizes = if args.common.quick {
        Sizes::QUICK
    } else {
        Sizes::FULL
    };
    let range = TimeRange::trimmed();
    let timer = RunTimer::start();
    let mut summaries = Vec::new();
    let mut bins = Vec::new();
    // panels[weighting][target]
    let mut panels: Vec<Vec<Panel>> = vec![Vec::new(); 4];
    for (ti, &name) in named::FIGURE_TARGETS.iter().enumerate() {
        let target = named::by_name(name)?;
        let losses = compute(
            name,
            &target,
            AnySchedule::Cosine(Cosine),
            range,
            sizes,
            args.common.seed,
            (ti as u64) << 32,
        )?;
        for (wi, w) in Weighting::ALL.iter().enumerate() {
            let positive: Vec<f64> = (0..4)
                .flat_map(|l| losses.estimates[l][wi].iter().copied())
                .filter(|v| v.is_finite() && *v > 0.0)
                .collect();
            let lo = positive
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min)
                .log10()
                .floor();
            let hi = positive
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max)
                .log10()
                .ceil();
            let edges: Vec<f64> = (0..=args.bins)
                .map(|k| 10f64.powf(lo + (hi - lo) * k as f64 / args.bins as f64))
                .collect();
            let mut panel = Panel::new(
                format!("{} · {}", target_title(name), w.name()),
                "loss at the true score",
                "fraction",
            )
            .log_x(true)
            .legend(None);
            for (l, loss) in LOSSES.iter().enumerate() {
                let values = &losses.estimates[l][wi];
                summaries.push(Summary::of(name, loss, w.name(), values));
                let mut counts = vec![0usize; args.bins as usize];
                for &v in values.iter().filter(|v| v.is_finite() && **v > 0.0) {
                    let k = edges
                        .partition_point(|&e| e <= v)
                        .clamp(1, args.bins as usize)
                        - 1;
                    counts[k] += 1;
                }
                let mut step = Vec::with_capacity(2 * counts.len());
                for (k, &c) in counts.iter().enumerate() {
                    let f = c as f64 / values.len() as f64;
                    step.push((edges[k], f));
                    step.push((edges[k + 1], f));
                    bins.push(Bin {
                        target: name.to_owned(),
                        loss,
                        weighting: w.name(),
                        bin_lo: edges[k],
                        bin_hi: edges[k + 1],
                        count: c,
                    });
                }
                panel = panel.with(Series::line(LABELS[l], l, step));
            }
            panels[wi].push(panel);
        }
    }
    out.write_csv("fig4.csv", &summaries)?;
    out.write_csv("fig4_histograms.csv", &bins)?;
    let mut grid_panels: Vec<Panel> = panels.into_iter().flatten().collect();
    grid_panels[0].legend = Some(SeriesLabelPosition::UpperRight);
    let grid = PanelGrid {
        title: "Fig. 4: loss at the true score; rows: weighting (original, DSM-optimal, TSM-optimal, uniform); columns: target".into(),
        cols: 4,
        panels: grid_panels,
    };
    let [svg, png] = save_svg_png(out.path(), "fig4", (1800, 1500), &grid)?;
    let params = Parameters {
        schedule: "cosine",
        time_range: (range.t_min(), range.t_max()),
        sizes,
        bins: args.bins,
        targets: named::FIGURE_TARGETS.to_vec(),
        losses: LOSSES,
        weightings: Weighting::ALL.map(|w| w.name()),
    };
    let files = [
        "fig4.csv",
        "fig4_histograms.csv",
        svg.as_str(),
        png.as_str(),
    ];
    let record = timer.record("fig4", args.common.seed, args.common.quick, params, &files);
    out.write_json("fig4.json", &record)?;
    tracing::info!("wrote {}", out.path().display());
    Ok(())
}
