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
