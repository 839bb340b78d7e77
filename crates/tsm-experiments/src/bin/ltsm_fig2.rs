//! Fig. 2 of *Latent Target Score Matching* (Ko & Geffner 2024): the distance between the
//! learned and the reference posterior against the simulator budget, for DSM, LTSM, MIX at
//! `w_t*` and MIX with the learned weight, per task, averaged over five observations and per
//! observation.
//!
//! For each task the five observations are simulated from five prior draws of a fixed seed
//! (2025, whatever `--seed`: the observations are the figure's, not the run's). For each
//! budget and loss a conditional score model is trained on `budget` simulations from
//! `--seed` (the same set for the four losses) and sampled at each observation (Euler–Maruyama,
//! 200 steps, EMA weights); the draws are compared with draws of the reference posterior
//! (exact Gaussian, `galton_board`'s grid, `sir`'s forward algorithm;
//! `SbiTask::reference_posterior`) by
//! - the unbiased `MMD²` with the kernel `exp(−‖u − v‖²/2h²)` on coordinates scaled by the
//!   reference's sd, `h` the median pairwise distance of the scaled reference (the raw
//!   median heuristic barely sees an error in a low-variance coordinate);
//! - the C2ST accuracy (`tsm_nn::c2st`, the SBI benchmark's classifier two-sample test:
//!   0.5 indistinguishable, 1 separable).
//!
//! `cargo xtask reproduce-ltsm-fig2 [--out DIR] [--seed S] [--quick]`
//!
//! Output `ltsm_fig2.csv` columns: `task,budget,loss,observation,mmd2,c2st` with
//! `observation` 1…5 or `mean` (the mean of the five). `ltsm_fig2.{svg,png}` draws `MMD²`
//! (rows: tasks; columns: the mean, then each observation), `ltsm_fig2_c2st.{svg,png}` the
//! C2ST accuracy; the JSON records the sizes, the observations and the seconds spent in each
//! stage.
//!
//! Full: the three tasks, budgets 10³, 10⁴, 10⁵, 5,000 steps at the `sbi train` defaults,
//! 2,000 draws a side. `--quick`: `linear_gaussian`, budgets 300 and 1,000, 300 steps of a
//! 2 × 32 MLP, 300 draws a side, 50 sampler steps, the C2ST classifier stopped after 10
//! epochs. Same seed, same CSV bytes (the C2ST is reproducible whatever the threads).

use std::sync::Arc;

use clap::Parser;
use serde::Serialize;
use tsm_core::sampler::{Conditioned, Sampler, SamplerConfig};
use tsm_experiments::ltsm::{train_sbi, RunSizes};
use tsm_experiments::output::RunTimer;
use tsm_experiments::plot::{save_svg_png, Panel, PanelGrid, Series};
use tsm_experiments::training::tune_cpu;
use tsm_experiments::{init_tracing, FigureArgs, OutputDir};
use tsm_nn::c2st::{c2st, C2stConfig};
use tsm_nn::candle::Device;
use tsm_nn::mmd::{median_bandwidth, mmd2_unbiased};
use tsm_nn::sbi::{SbiLoss, SimulationSet};
use tsm_nn::score::ModelConditionalScore;
use tsm_targets::sbi::SbiTask;

/// Reproduces Fig. 2 of Latent TSM: MMD² (and C2ST) between learned and reference
/// posteriors against the simulator budget, DSM vs LTSM vs MIX(w*) vs MIX(learned).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: FigureArgs,
}

/// The seed of the five observations (fixed: they are the figure's).
const OBSERVATION_SEED: u64 = 2025;
/// Observations per task.
const OBSERVATIONS: usize = 5;
/// The losses, in the figure's order.
const LOSSES: [SbiLoss; 4] = [
    SbiLoss::Dsm,
    SbiLoss::Ltsm,
    SbiLoss::Mix,
    SbiLoss::MixLearned,
];

#[derive(Debug, Serialize)]
struct Row {
    task: String,
    budget: usize,
    loss: String,
    observation: String,
    mmd2: f64,
    c2st: f64,
}

#[derive(Debug, Serialize)]
struct Parameters {
    tasks: Vec<String>,
    budgets: Vec<usize>,
    sizes: RunSizes,
    draws: usize,
    sampler: String,
    sampler_steps: usize,
    observation_seed: u64,
    observations: Vec<(String, Vec<Vec<f64>>)>,
    seconds: Seconds,
}

#[derive(Debug, Default, Serialize)]
struct Seconds {
    reference: f64,
    train: f64,
    sample: f64,
    mmd: f64,
    c2st: f64,
}

/// `x` with each coordinate divided by `sd`.
fn scaled(x: &[f64], sd: &[f64]) -> Vec<f64> {
    x.chunks_exact(sd.len())
        .flat_map(|row| row.iter().zip(sd).map(|(v, s)| v / s))
        .collect()
}

fn main() -> anyhow::Result<()> {
    tune_cpu();
    init_tracing();
    let args = Args::parse();
    let quick = args.common.quick;
    let (tasks, budgets, sizes, draws, sampler_steps) = if quick {
        (
            vec![SbiTask::LinearGaussian],
            vec![300, 1_000],
            RunSizes::quick(300),
            300,
            50,
        )
    } else {
        (
            SbiTask::ALL.to_vec(),
            vec![1_000, 10_000, 100_000],
            RunSizes::full(5_000),
            2_000,
            200,
        )
    };
    if args.common.dry_run(
        "ltsm_fig2",
        format!(
            "{} tasks × {} budgets × 4 losses, {} steps each",
            tasks.len(),
            budgets.len(),
            sizes.steps
        ),
    ) {
        return Ok(());
    }
    let out = OutputDir::create(args.common.out_dir("ltsm_fig2"))?;
    let timer = RunTimer::start();
    let seed = args.common.seed;
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    // The benchmark's classifier; --quick trains it for at most 10 epochs (a test of the
    // pipeline, not of the metric). Its folds run in parallel on a pool of their own
    // (tune_cpu keeps rayon's global pool at one thread for candle).
    let c2st_cfg = if quick {
        C2stConfig {
            max_epochs: 10,
            ..C2stConfig::default()
        }
    } else {
        C2stConfig::default()
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let mut seconds = Seconds::default();
    let (mut rows, mut observations_record) = (Vec::new(), Vec::new());
    let (mut mmd_panels, mut c2st_panels) = (Vec::new(), Vec::new());
    for &task in &tasks {
        let (d, name) = (task.dim(), task.to_string());
        // The five observations and their reference draws (scaled by the reference's sd).
        let stage = RunTimer::start();
        let obs_set = SimulationSet::simulate(task, OBSERVATIONS, OBSERVATION_SEED, |_| {})?;
        let k = task.observation_dim();
        let observations: Vec<Vec<f64>> = obs_set
            .observations()
            .chunks_exact(k)
            .map(<[f64]>::to_vec)
            .collect();
        let mut references = Vec::new();
        for (i, x) in observations.iter().enumerate() {
            let posterior = task.reference_posterior(x)?;
            let mut rng = tsm_core::rng::stream(OBSERVATION_SEED, i as u64);
            let draws_ref = posterior.sample_n(&mut rng, draws);
            let sd = posterior.sd();
            let scaled_ref = scaled(&draws_ref, &sd);
            let half = draws / 2 * d;
            let h = median_bandwidth(&scaled_ref[..half], &scaled_ref[half..], d)?;
            references.push((draws_ref, sd, scaled_ref, h));
        }
        seconds.reference += stage.elapsed_s();
        observations_record.push((name.clone(), observations.clone()));
        // metric[loss][budget][observation] = (mmd2, c2st)
        let mut metric = vec![vec![vec![(0.0, 0.0); OBSERVATIONS]; budgets.len()]; LOSSES.len()];
        for (b, &budget) in budgets.iter().enumerate() {
            let set = Arc::new(SimulationSet::simulate(task, budget, seed, |_| {})?);
            for (l, &loss) in LOSSES.iter().enumerate() {
                let stage = RunTimer::start();
                let trainer = train_sbi(&set, loss, &sizes, threads)?;
                seconds.train += stage.elapsed_s();
                let model = trainer.model(true, &Device::Cpu)?;
                let sampler = SamplerConfig {
                    sampler: Sampler::EulerMaruyama,
                    steps: sampler_steps,
                    data_variance: trainer.config().loss.sigma_data_sq,
                    ..SamplerConfig::default()
                };
                for (i, x) in observations.iter().enumerate() {
                    let stage = RunTimer::start();
                    let score = ModelConditionalScore::new(&model, &Device::Cpu)?;
                    let mut posterior = Conditioned::broadcast(score, x.clone())?;
                    let mut rng = tsm_core::rng::stream(seed, (b * 100 + l * 10 + i) as u64);
                    let learned =
                        sampler.sample(&mut posterior, model.schedule(), draws, &mut rng)?;
                    seconds.sample += stage.elapsed_s();
                    let (draws_ref, sd, scaled_ref, h) = &references[i];
                    let stage = RunTimer::start();
                    let mmd2 = mmd2_unbiased(&scaled(&learned, sd), scaled_ref, d, *h)?;
                    seconds.mmd += stage.elapsed_s();
                    let stage = RunTimer::start();
                    let acc = pool.install(|| c2st(&learned, draws_ref, d, &c2st_cfg, seed))?;
                    seconds.c2st += stage.elapsed_s();
                    metric[l][b][i] = (mmd2, acc);
                    rows.push(Row {
                        task: name.clone(),
                        budget,
                        loss: loss.to_string(),
                        observation: (i + 1).to_string(),
                        mmd2,
                        c2st: acc,
                    });
                }
                let mean = |f: fn(&(f64, f64)) -> f64| {
                    metric[l][b].iter().map(f).sum::<f64>() / OBSERVATIONS as f64
                };
                let (mmd2, acc) = (mean(|m| m.0), mean(|m| m.1));
                tracing::info!("{task} budget {budget} {loss}: MMD² {mmd2:.4}, C2ST {acc:.3}");
                rows.push(Row {
                    task: name.clone(),
                    budget,
                    loss: loss.to_string(),
                    observation: "mean".into(),
                    mmd2,
                    c2st: acc,
                });
            }
        }
        // Panels: the mean, then each observation.
        for (metric_index, panels) in [(0, &mut mmd_panels), (1, &mut c2st_panels)] {
            for column in 0..=OBSERVATIONS {
                let title = if column == 0 {
                    format!("{name}: mean of 5")
                } else {
                    format!("{name}: x_{column}")
                };
                let y = if metric_index == 0 { "MMD²" } else { "C2ST" };
                let mut panel = Panel::new(title, "simulations", y).log_x(true);
                for (l, loss) in LOSSES.iter().enumerate() {
                    let points = budgets
                        .iter()
                        .enumerate()
                        .map(|(b, &budget)| {
                            let pick = |m: &(f64, f64)| if metric_index == 0 { m.0 } else { m.1 };
                            let v = if column == 0 {
                                metric[l][b].iter().map(pick).sum::<f64>() / OBSERVATIONS as f64
                            } else {
                                pick(&metric[l][b][column - 1])
                            };
                            (budget as f64, v)
                        })
                        .collect();
                    let label = if column == 0 {
                        loss.to_string()
                    } else {
                        String::new()
                    };
                    panel = panel.with(Series::line(label, l, points));
                }
                panels.push(panel);
            }
        }
    }
    out.write_csv("ltsm_fig2.csv", &rows)?;
    let title = |what: &str| {
        format!(
            "Latent TSM Fig. 2: {what} of learned vs reference posterior against the budget \
             ({} steps)",
            sizes.steps
        )
    };
    let height = 360 * tasks.len() as u32 + 60;
    let [svg, png] = save_svg_png(
        out.path(),
        "ltsm_fig2",
        (2100, height),
        &PanelGrid {
            title: title("MMD²"),
            cols: OBSERVATIONS + 1,
            panels: mmd_panels,
        },
    )?;
    let [svg_c, png_c] = save_svg_png(
        out.path(),
        "ltsm_fig2_c2st",
        (2100, height),
        &PanelGrid {
            title: title("C2ST accuracy"),
            cols: OBSERVATIONS + 1,
            panels: c2st_panels,
        },
    )?;
    let params = Parameters {
        tasks: tasks.iter().map(ToString::to_string).collect(),
        budgets,
        sizes,
        draws,
        sampler: "em".into(),
        sampler_steps,
        observation_seed: OBSERVATION_SEED,
        observations: observations_record,
        seconds,
    };
    let record = timer.record(
        "ltsm_fig2",
        seed,
        quick,
        params,
        &["ltsm_fig2.csv", &svg, &png, &svg_c, &png_c],
    );
    out.write_json("ltsm_fig2.json", &record)?;
    tracing::info!("wrote {}", out.path().display());
    Ok(())
}
