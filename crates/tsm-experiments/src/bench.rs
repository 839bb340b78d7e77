//! The timing loop shared by the `bench_*` binaries: repeat, print each run, then the best and
//! the median (the best is the least disturbed by other load on a shared machine).

use std::time::Instant;

/// Runs `run(r)` for `r = 0..repeats` (at least once) and prints, per run and then for the
/// best and the median wall time, the rate in `unit`s per second for `work` units per run.
/// `run` returns extra text for its line (e.g. `", mean ESS 90.0"`), or an empty string.
///
/// # Errors
/// The first error of `run`.
pub fn report_repeats(
    repeats: usize,
    work: f64,
    unit: &str,
    mut run: impl FnMut(u64) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    let mut walls = Vec::new();
    for r in 0..repeats.max(1) {
        let start = Instant::now();
        let extra = run(r as u64)?;
        let wall = start.elapsed().as_secs_f64();
        println!(
            "  run {r}: {wall:.3} s wall, {:.3e} {unit}s/s{extra}",
            work / wall
        );
        walls.push(wall);
    }
    walls.sort_by(f64::total_cmp);
    let (best, median) = (walls[0], walls[walls.len() / 2]);
    println!(
        "best {best:.3} s ({:.3e} {unit}s/s, {:.2} ns/{unit}/thread); median {median:.3} s",
        work / best,
        best * 1e9 * rayon::current_num_threads() as f64 / work
    );
    Ok(())
}
