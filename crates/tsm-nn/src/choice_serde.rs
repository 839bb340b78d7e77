//! serde for this crate's [`Choice`](tsm_core::choice::Choice)s through their string form.
//!
//! `tsm_core::serde_via_str!` emits its impls under `#[cfg(feature = "serde")]`, which is
//! evaluated in the crate that expands it; this crate always has serde (the checkpoint
//! record), so it uses this unconditional copy.

/// `Serialize` as the `Display` string, `Deserialize` through `FromStr`.
macro_rules! via_str {
    ($ty:ty) => {
        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(
                &self,
                serializer: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

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

pub(crate) use via_str;
