//! Named choices: a loss, a weighting, a schedule, a sampler — each one enum that parses from
//! and prints as its snake_case name.
//!
//! A [`Choice`] is `FromStr + Display` with the list of names it accepts, so that every
//! front end (a CLI flag, a JSON record, a CSV column) goes through the same code: adding a
//! variant touches one enum. Names that carry a number are written `name=V` (e.g.
//! `kappa_bar=0.04`, `mixture=0.3`); [`Choice::NAMES`] spells them with a placeholder.
//!
//! With the `serde` feature every choice serialises as its [`Display`]
//! string and deserialises through [`FromStr`], so a record reads the same
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

/// The names `a` followed by `b` (`C = A + B`, checked when the constant is evaluated): the
/// [`Choice::NAMES`] of a choice that extends another's names with its own.
///
/// ```
/// const BASE: [&str; 2] = ["dsm", "tsm"];
/// const ALL: [&str; 3] = tsm_core::choice::concat_names(BASE, ["ism"]);
/// assert_eq!(ALL, ["dsm", "tsm", "ism"]);
/// ```
pub const fn concat_names<const A: usize, const B: usize, const C: usize>(
    a: [&'static str; A],
    b: [&'static str; B],
) -> [&'static str; C] {
    assert!(
        A + B == C,
        "concat_names: the result must hold exactly both lists"
    );
    let mut out = [""; C];
    let mut i = 0;
    while i < A {
        out[i] = a[i];
        i += 1;
    }
    let mut j = 0;
    while j < B {
        out[A + j] = b[j];
        j += 1;
    }
    out
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

/// serde, re-exported for [`serde_via_str!`](crate::serde_via_str) so that crates expanding
/// the macro need no serde feature of their own.
#[cfg(feature = "serde")]
#[doc(hidden)]
pub use serde as __serde;

/// Implements `serde::Serialize`/`Deserialize` for a [`Choice`] through its string form.
///
/// With tsm-core's `serde` feature off, it expands to nothing. The feature is decided here, in
/// tsm-core, not in the crate that expands the macro (hence two definitions rather than a
/// `#[cfg]` inside one). Exported for tsm-nn's choices; not part of the public API.
#[cfg(feature = "serde")]
#[doc(hidden)]
#[macro_export]
macro_rules! serde_via_str {
    ($ty:ty) => {
        impl $crate::choice::__serde::Serialize for $ty {
            fn serialize<S: $crate::choice::__serde::Serializer>(
                &self,
                serializer: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> $crate::choice::__serde::Deserialize<'de> for $ty {
            fn deserialize<D: $crate::choice::__serde::Deserializer<'de>>(
                deserializer: D,
            ) -> ::std::result::Result<Self, D::Error> {
                let s =
                    <::std::string::String as $crate::choice::__serde::Deserialize>::deserialize(
                        deserializer,
                    )?;
                s.parse()
                    .map_err(<D::Error as $crate::choice::__serde::de::Error>::custom)
            }
        }
    };
}

/// Without the `serde` feature: nothing to implement.
#[cfg(not(feature = "serde"))]
#[doc(hidden)]
#[macro_export]
macro_rules! serde_via_str {
    ($ty:ty) => {};
}

/// Implements [`Choice`], `FromStr`, `Display`, serde and a `name()` method for an enum of
/// unit variants, from one list of `Variant => "name"` pairs — the one place a new variant's
/// name is written.
///
/// ```
/// #[derive(Debug, Clone, Copy, PartialEq)]
/// enum Colour { Red, DarkBlue }
/// tsm_core::unit_choice!(Colour, "colour", [Red => "red", DarkBlue => "dark_blue"]);
///
/// use tsm_core::choice::Choice;
/// assert_eq!("dark_blue".parse::<Colour>()?, Colour::DarkBlue);
/// assert_eq!(Colour::Red.to_string(), "red");
/// assert_eq!(Colour::NAMES, ["red", "dark_blue"]);
/// assert!("blue".parse::<Colour>().is_err()); // lists the valid names
/// # Ok::<(), tsm_core::Error>(())
/// ```
#[macro_export]
macro_rules! unit_choice {
    ($ty:ident, $kind:literal, [$($variant:ident => $name:literal),+ $(,)?]) => {
        impl $ty {
            /// The snake_case name, as on the command line and in the CSVs.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }
        }

        impl $crate::choice::Choice for $ty {
            const KIND: &'static str = $kind;
            const NAMES: &'static [&'static str] = &[$($name),+];
        }

        impl ::std::str::FromStr for $ty {
            type Err = $crate::Error;

            /// # Errors
            /// `Error::UnknownName` listing the valid names.
            fn from_str(s: &str) -> ::std::result::Result<Self, $crate::Error> {
                match s {
                    $($name => Ok(Self::$variant),)+
                    _ => Err($crate::choice::unknown::<Self>(s)),
                }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.name())
            }
        }

        $crate::serde_via_str!($ty);
    };
}
