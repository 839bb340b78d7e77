//! Named choices: a loss, a weighting, a schedule, a sampler — each one enum that parses from
//! and prints as its snake_case name.
//!
//! A [`Choice`] is `FromStr + Display` with the list of names it accepts, so that every
//! front end (a CLI flag, a JSON record, a CSV column) goes through the same code: adding a
//! variant touches one enum. Names that carry a number are written `name=V` (e.g.
//! `kappa_bar=0.04`, `mixture=0.3`); [`Choice::NAMES`] spells them with a placeholder.
//!
//! With the `serde` feature every choice serialises as its [`Display`](std::fmt::Display)
//! string and deserialises through [`FromStr`](std::str::FromStr), so a record reads the same
//! as the command line that made it.

use std::fmt::Display;
use std::str::FromStr;

use crate::Error;

/// A closed set of named alternatives with a string form (see the [module docs](self)).
pub trait Choice: FromStr<Err = Error> + Display {
    /// What the choice is called in messages (`"loss"`, `"schedule"`).
    const KIND: &'static str;
    /// The names that [`FromStr`] accepts, for help texts and error messages; a name with
    /// a number is spelled with a placeholder (`mixture=W`).
    const NAMES: &'static [&'static str];
}

/// Parses `name` or `name=value`: returns `(name, Some(value))` for the second form.
///
/// # Errors
/// [`Error::UnknownName`] of kind `C::KIND` when the value is not a number.
pub fn split_value<C: Choice>(s: &str) -> crate::Result<(&str, Option<f64>)> {
    match s.split_once('=') {
        None => Ok((s, None)),
        Some((name, value)) => match value.trim().parse::<f64>() {
            Ok(v) => Ok((name.trim(), Some(v))),
            Err(_) => Err(unknown::<C>(s)),
        },
    }
}

/// [`Error::UnknownName`] for `s`, listing `C::NAMES`.
pub fn unknown<C: Choice>(s: &str) -> Error {
    crate::error::unknown_name(C::KIND, s, C::NAMES)
}

/// Implements `serde::Serialize`/`Deserialize` for a [`Choice`] through its string form
/// (only with the `serde` feature; a no-op otherwise).
#[doc(hidden)]
#[macro_export]
macro_rules! serde_via_str {
    ($ty:ty) => {
        #[cfg(feature = "serde")]
        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(
                &self,
                serializer: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        #[cfg(feature = "serde")]
        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> ::std::result::Result<Self, D::Error> {
                let s = <::std::string::String as ::serde::Deserialize>::deserialize(deserializer)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}
