//! "A known value or any other string", the shape of every VoiceHub enum.

/// Defines an enum of documented values plus `Other(String)`.
///
/// Input is matched case-insensitively; a documented value is emitted in its documented
/// (lower-case) spelling, any other value exactly as it was received. Unknown values are never
/// rejected: VoiceHub adds values without notice.
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value not (yet) documented, carried exactly as received.
            Other(String),
        }

        impl $name {
            /// The documented values, in their canonical spelling.
            pub const KNOWN: &'static [&'static str] = &[$($text),+];

            /// Reads a value; never fails.
            pub fn parse(text: &str) -> Self {
                $( if text.eq_ignore_ascii_case($text) { return Self::$variant; } )+
                Self::Other(text.to_owned())
            }

            /// The normalised spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $text, )+
                    Self::Other(text) => text,
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <::std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Ok(Self::parse(&text))
            }
        }

        impl ::schemars::JsonSchema for $name {
            fn schema_name() -> ::std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut ::schemars::SchemaGenerator) -> ::schemars::Schema {
                ::schemars::json_schema!({
                    "type": "string",
                    "description":
                        "A documented value (emitted lower-case) or any other string, kept as received.",
                    "examples": Self::KNOWN,
                })
            }
        }
    };
}

pub(crate) use open_enum;
