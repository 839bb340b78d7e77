//! Arguments shared by every figure binary (`[--out DIR] [--seed S] [--quick] [--dry-run]`,
//! see `docs/conventions.md`), and the flag plumbing of every binary: value parsers for the
//! libraries' choices and for bounded numbers, the mapping of a library's configuration
//! error to the flag that set the value, and readable numbers in messages.
//!
//! **Flag rules** (every binary): a number is refused before any work when it is not finite,
//! outside its range, or makes the run too large (each binary bounds its sizes and their
//! product, naming the flags); refusals exit with status 2 like clap's own. `--dry-run` checks
//! every flag, prints what the run would do and exits 0 without writing anything.

use std::fmt::Display;
use std::path::PathBuf;

/// `--out`, `--seed`, `--quick`: flatten into each figure's `clap` parser.
///
/// The field docs are the `--help` texts, written for a terminal: `<figure>` there is a
/// placeholder, not an HTML tag.
#[allow(rustdoc::invalid_html_tags)]
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
    /// Check the flags, print what would run, and exit without computing or writing anything
    #[arg(long)]
    pub dry_run: bool,
}

impl FigureArgs {
    /// The output folder: `--out`, or `results/<figure>` under the current directory.
    pub fn out_dir(&self, figure: &str) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| PathBuf::from("results").join(figure))
    }

    /// With `--dry-run`, prints what the figure would compute (`what`) and where it would
    /// write, and returns true: the caller returns then, after its checks and before any
    /// work. Without it, returns false.
    pub fn dry_run(&self, figure: &str, what: impl Display) -> bool {
        if self.dry_run {
            println!(
                "dry run: would compute {what} (seed {}{}) and write {figure}.{{csv,svg,png,json}} \
                 into {}",
                self.seed,
                if self.quick { ", quick" } else { "" },
                self.out_dir(figure).display()
            );
        }
        self.dry_run
    }
}

/// A `clap` value parser for any library [`Choice`](tsm_core::choice::Choice): parses through
/// its `FromStr` (so the CLI accepts exactly what the library does, `name=V` forms included)
/// and lists [`Choice::NAMES`](tsm_core::choice::Choice::NAMES) in `--help`.
///
/// ```ignore
/// #[arg(long, value_parser = choice::<Weighting>(), default_value = "uniform")]
/// weighting: Weighting,
/// ```
pub fn choice<C>() -> ChoiceParser<C>
where
    C: tsm_core::choice::Choice + Clone + Send + Sync + 'static,
{
    ChoiceParser(std::marker::PhantomData)
}

/// The parser returned by [`choice`].
#[derive(Debug)]
pub struct ChoiceParser<C>(std::marker::PhantomData<fn() -> C>);

impl<C> Clone for ChoiceParser<C> {
    fn clone(&self) -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<C> clap::builder::TypedValueParser for ChoiceParser<C>
where
    C: tsm_core::choice::Choice + Clone + Send + Sync + 'static,
{
    type Value = C;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<C, clap::Error> {
        let flag = arg.map_or_else(|| "value".to_owned(), |a| format!("--{}", a.get_id()));
        let text = value.to_str().ok_or_else(|| {
            clap::Error::raw(
                clap::error::ErrorKind::InvalidUtf8,
                format!("{flag}: not UTF-8\n"),
            )
            .with_cmd(cmd)
        })?;
        text.parse::<C>().map_err(|e| {
            clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!("invalid value '{text}' for {flag}: {e}\n"),
            )
            .with_cmd(cmd)
        })
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            C::NAMES
                .iter()
                .map(|n| clap::builder::PossibleValue::new(*n)),
        ))
    }
}

/// `x` in its shortest round-trip form, in scientific notation when the plain one would be
/// long (`1e-300`, not three hundred digits).
pub fn num(x: f64) -> String {
    if x == 0.0 || !x.is_finite() || (1e-4..1e15).contains(&x.abs()) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// Exits with status 2 and clap's usage message for `A`, saying `message` (a flag value
/// refused after parsing: a cross-flag rule, a size bound, a library's check).
pub fn usage_error<A: clap::CommandFactory>(message: impl Display) -> ! {
    let mut cmd = A::command();
    // The binary's name as it was called (clap's own errors use it too).
    if let Some(name) = std::env::args_os()
        .next()
        .as_deref()
        .map(std::path::Path::new)
        .and_then(std::path::Path::file_name)
    {
        cmd = cmd.bin_name(name.to_string_lossy().into_owned());
    }
    cmd.error(clap::error::ErrorKind::ValueValidation, message)
        .exit()
}

/// Maps a library error to the flag that set the offending value: an
/// [`tsm_nn::Error::Invalid`] whose field is in `flags` (`(field, flag)` pairs) exits with
/// status 2 naming the flag ([`usage_error`]); any other error comes back for the caller to
/// report (status 1).
pub fn flag_error<A: clap::CommandFactory>(
    error: tsm_nn::Error,
    flags: &[(&str, &str)],
) -> anyhow::Error {
    if let tsm_nn::Error::Invalid {
        field,
        value,
        allowed,
    } = &error
    {
        if let Some((_, flag)) = flags.iter().find(|(f, _)| f == field) {
            usage_error::<A>(format!(
                "invalid value '{value}' for '{flag}': must be {allowed}"
            ));
        }
    }
    anyhow::Error::new(error)
}

/// A clap value parser for a finite `f64` inside a range; the message names the flag and the
/// range: `invalid value 'nan' for '--lr': must be a finite number > 0`.
///
/// ```ignore
/// #[arg(long, value_parser = float().above(0.0), default_value_t = 1e-4)]
/// lr: f64,
/// ```
pub fn float() -> FloatParser {
    FloatParser {
        low: None,
        high: None,
    }
}

/// The parser returned by [`float`]: each end `(value, inclusive)`.
#[derive(Debug, Clone, Copy)]
pub struct FloatParser {
    low: Option<(f64, bool)>,
    high: Option<(f64, bool)>,
}

impl FloatParser {
    /// `x ≥ low`.
    pub fn at_least(self, low: f64) -> Self {
        Self {
            low: Some((low, true)),
            ..self
        }
    }
    /// `x > low`.
    pub fn above(self, low: f64) -> Self {
        Self {
            low: Some((low, false)),
            ..self
        }
    }
    /// `x ≤ high`.
    pub fn at_most(self, high: f64) -> Self {
        Self {
            high: Some((high, true)),
            ..self
        }
    }
    /// `x < high`.
    pub fn below(self, high: f64) -> Self {
        Self {
            high: Some((high, false)),
            ..self
        }
    }

    /// The allowed values in words.
    fn allowed(&self) -> String {
        match (self.low, self.high) {
            (None, None) => "a finite number".to_owned(),
            (Some((l, inc)), None) => {
                format!("a finite number {} {}", if inc { "≥" } else { ">" }, num(l))
            }
            (None, Some((h, inc))) => {
                format!("a finite number {} {}", if inc { "≤" } else { "<" }, num(h))
            }
            (Some((l, li)), Some((h, hi))) => format!(
                "a number in {}{}, {}{}",
                if li { "[" } else { "(" },
                num(l),
                num(h),
                if hi { "]" } else { ")" }
            ),
        }
    }

    fn accepts(&self, x: f64) -> bool {
        x.is_finite()
            && self
                .low
                .is_none_or(|(l, inc)| if inc { x >= l } else { x > l })
            && self
                .high
                .is_none_or(|(h, inc)| if inc { x <= h } else { x < h })
    }
}

impl clap::builder::TypedValueParser for FloatParser {
    type Value = f64;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<f64, clap::Error> {
        let flag = arg.map_or_else(|| "value".to_owned(), |a| format!("--{}", a.get_id()));
        let text = value.to_string_lossy();
        match text.trim().parse::<f64>() {
            Ok(x) if self.accepts(x) => Ok(x),
            _ => Err(clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!(
                    "invalid value '{text}' for '{}': must be {}\n",
                    flag.replace('_', "-"),
                    self.allowed()
                ),
            )
            .with_cmd(cmd)),
        }
    }
}

/// A clap value parser for an integer flag in `range` (clap's own, which names the flag and
/// the range, e.g. `18446744073709551615 is not in 1..=1000000000`).
pub fn count<T>(range: std::ops::RangeInclusive<u64>) -> clap::builder::RangedU64ValueParser<T>
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
    <T as TryFrom<u64>>::Error: Send + Sync + 'static + std::error::Error + ToString,
{
    clap::builder::RangedU64ValueParser::<T>::new().range(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Flags {
        #[arg(long, value_parser = float().above(0.0), default_value_t = 1e-4)]
        lr: f64,
        #[arg(long, value_parser = float().at_least(0.0).below(1.0), default_value_t = 0.5)]
        ema_decay: f64,
        #[arg(long, value_parser = count::<usize>(2..=1 << 20), default_value_t = 512)]
        batch: usize,
    }

    fn parse(args: &[&str]) -> Result<Flags, String> {
        use clap::Parser;
        Flags::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn numbers_are_finite_and_in_range_and_the_flag_is_named() {
        let ok = parse(&["--lr", "1e-300", "--ema-decay", "0", "--batch", "2"]).expect("ok");
        assert_eq!((ok.lr, ok.ema_decay, ok.batch), (1e-300, 0.0, 2));
        for (flag, bad) in [
            ("--lr", "nan"),
            ("--lr", "0"),
            ("--lr", "-1"),
            ("--lr", "inf"),
            ("--lr", "1e999"),
            ("--ema-decay", "1"),
            ("--ema-decay", "-1e-300"),
            ("--ema-decay", "NaN"),
            ("--batch", "18446744073709551615"),
            ("--batch", "1"),
            ("--batch", "-1"),
            ("--batch", "1e11"),
        ] {
            let arg = format!("{flag}={bad}");
            let err = parse(&[&arg]).expect_err(bad);
            assert!(
                err.contains(flag) && err.contains(bad),
                "{flag} {bad}: {err}"
            );
        }
        let err = parse(&["--ema-decay", "2"]).expect_err("2");
        assert!(err.contains("a number in [0, 1)"), "{err}");
    }

    #[test]
    fn numbers_print_short() {
        assert_eq!(num(1e-300), "1e-300");
        assert_eq!(num(0.001), "0.001");
        assert_eq!(num(20000.0), "20000");
        assert_eq!(num(1e30), "1e30");
        assert_eq!(num(f64::NAN), "NaN");
    }
}
