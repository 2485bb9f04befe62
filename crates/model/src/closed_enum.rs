//! A closed set of label values (metric labels, reason codes), written once.

/// Defines a fieldless enum whose variants each have a fixed text, with `ALL` (declaration
/// order, so `ALL[v as usize] == v`), their texts `NAMES` and `as_str`.
///
/// ```
/// voicehub_model::closed_enum! {
///     /// Colours.
///     pub enum Colour {
///         /// Red.
///         Red => "red",
///         /// Blue.
///         Blue => "blue",
///     }
/// }
/// assert_eq!(Colour::ALL.map(Colour::as_str), ["red", "blue"]);
/// assert_eq!(Colour::NAMES, ["red", "blue"]);
/// ```
#[macro_export]
macro_rules! closed_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: [Self; [$($text),+].len()] = [$(Self::$variant),+];

            /// Every value's text, in declaration order.
            pub const NAMES: [&'static str; [$($text),+].len()] = [$($text),+];

            /// The text (a metric label value, a reason code).
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $text, )+
                }
            }
        }
    };
}
