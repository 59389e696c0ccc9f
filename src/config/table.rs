//! The expansion of the settings table (see the module `config`): from each entry, its flag
//! and `JUKEBOX_*` variable with their `--help` line, its key in the TOML file, its field in
//! [`Config`](super::Config) or [`Limits`](super::Limits) (or its place in the party
//! [`Settings`](crate::party::Settings)), its default and its check.

macro_rules! settings {
    // Sorts each entry into its group by the word before its key, keeping the table's order
    // in the last list (the order of `--help`).
    (@sort [$($c:tt)*] [$($l:tt)*] [$($p:tt)*] [$($all:tt)*]
        $(#[doc = $doc:literal])+ config $key:ident : $kind:ty $(= $default:expr)? $(, $vn:literal)?;
        $($rest:tt)*
    ) => {
        settings!(@sort
            [$($c)* { $key: $kind [$($default)?] [$($vn)?] [$($doc)+] }] [$($l)*] [$($p)*]
            [$($all)* { $key: $kind [$($default)?] [$($vn)?] [$($doc)+] }]
            $($rest)*);
    };
    (@sort [$($c:tt)*] [$($l:tt)*] [$($p:tt)*] [$($all:tt)*]
        $(#[doc = $doc:literal])+ limit $key:ident : $kind:ty $(= $default:expr)? $(, $vn:literal)?;
        $($rest:tt)*
    ) => {
        settings!(@sort
            [$($c)*] [$($l)* { $key: $kind [$($default)?] [$($vn)?] [$($doc)+] }] [$($p)*]
            [$($all)* { $key: $kind [$($default)?] [$($vn)?] [$($doc)+] }]
            $($rest)*);
    };
    (@sort [$($c:tt)*] [$($l:tt)*] [$($p:tt)*] [$($all:tt)*]
        $(#[doc = $doc:literal])+ live $key:ident : $kind:ty $(= $default:expr)? $(, $vn:literal)?;
        $($rest:tt)*
    ) => {
        settings!(@sort
            [$($c)*] [$($l)*] [$($p)* { $key: $kind [$($default)?] [$($vn)?] [$($doc)+] }]
            [$($all)* { $key: $kind [$($default)?] [$($vn)?] [$($doc)+] }]
            $($rest)*);
    };
    // Every entry sorted. A `limit` needs a default; a `live` one takes the party rules' own.
    (@sort
        [$({ $ck:ident: $ckind:ty [$($cd:expr)?] [$($cvn:literal)?] [$($cdoc:literal)+] })*]
        [$({ $lk:ident: $lkind:ty [$ld:expr] [$($lvn:literal)?] [$($ldoc:literal)+] })*]
        [$({ $pk:ident: $pkind:ty [] [$($pvn:literal)?] [$($pdoc:literal)+] })*]
        [$({ $ak:ident: $akind:ty [$($ad:expr)?] [$($avn:literal)?] [$($adoc:literal)+] })*]
    ) => {
        /// The main command's flags and variables as given, and (the same keys) the file's.
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct RunArgs {
            /// The TOML file to read (a flag and a variable, not a key of the file).
            #[serde(skip)]
            pub config: Option<PathBuf>,
            $( pub $ak: Option<<$akind as Kind>::Raw>, )*
        }

        /// Every key of the table, in its order.
        pub const KEYS: &[&str] = &[$(stringify!($ak)),*];
        /// The keys of the party settings the host may change live.
        pub const LIVE_KEYS: &[&str] = &[$(stringify!($pk)),*];

        impl clap::FromArgMatches for RunArgs {
            fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
                Ok(RunArgs {
                    config: m.try_get_one::<PathBuf>("config").ok().flatten().cloned(),
                    $( $ak: <<$akind as Kind>::Raw as Raw>::get(m, stringify!($ak)), )*
                })
            }
            fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
                *self = Self::from_arg_matches(m)?;
                Ok(())
            }
        }

        impl clap::Args for RunArgs {
            fn augment_args(cmd: clap::Command) -> clap::Command {
                cmd.arg(config_arg())
                    $( .arg(arg::<$akind>(
                        stringify!($ak),
                        &[$($adoc),+],
                        settings!(@opt $($avn)?),
                        settings!(@opt $(&$ad)?),
                    )) )*
            }
            fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
                Self::augment_args(cmd)
            }
        }

        /// The validated configuration of a running jukebox.
        #[derive(Debug, Clone)]
        pub struct Config {
            $( $(#[doc = $cdoc])+ pub $ck: settings!(@ty $ckind $(, $cd)?), )*
            pub limits: Limits,
            /// Party rules used on first start; afterwards the persisted (host-edited) ones
            /// win, except for keys set explicitly, which are applied again at every start.
            pub settings: Settings,
            /// Which settings keys were given explicitly (flag, environment or file).
            pub explicit_settings: Vec<&'static str>,
        }

        /// Abuse limits of the live server (defaults no honest guest meets).
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Limits {
            $( $(#[doc = $ldoc])+ pub $lk: <$lkind as Kind>::Value, )*
        }

        impl Default for Limits {
            fn default() -> Self {
                Limits { $( $lk: $ld, )* }
            }
        }

        impl Config {
            /// Each key from the flag or variable, else the file, else its default; checked.
            fn merge_keys(a: &RunArgs, f: RunArgs) -> Result<Config, ConfigError> {
                let mut settings = Settings::default();
                let mut explicit_settings = Vec::new();
                $(
                    if let Some(raw) = a.$pk.clone().or(f.$pk) {
                        let key = stringify!($pk);
                        let value = check::<$pkind>(key, raw)?;
                        settings = live::with(&settings, key, &value).map_err(|r| invalid(key, r))?;
                        explicit_settings.push(key);
                    }
                )*
                Ok(Config {
                    $( $ck: settings!(@value $ck $ckind, a.$ck.clone().or(f.$ck) $(, $cd)?), )*
                    limits: Limits {
                        $( $lk: settings!(@value $lk $lkind, a.$lk.clone().or(f.$lk), $ld), )*
                    },
                    settings,
                    explicit_settings,
                })
            }
        }
    };
    (@ty $kind:ty, $default:expr) => { <$kind as Kind>::Value };
    (@ty $kind:ty) => { Option<<$kind as Kind>::Value> };
    (@value $key:ident $kind:ty, $raw:expr, $default:expr) => {
        match $raw {
            Some(raw) => check::<$kind>(stringify!($key), raw)?,
            None => $default,
        }
    };
    (@value $key:ident $kind:ty, $raw:expr) => {
        match $raw {
            Some(raw) => Some(check::<$kind>(stringify!($key), raw)?),
            None => None,
        }
    };
    (@opt) => { None };
    (@opt $e:expr) => { Some($e) };
    // The table itself.
    ($($entries:tt)*) => { settings!(@sort [] [] [] [] $($entries)*); };
}
