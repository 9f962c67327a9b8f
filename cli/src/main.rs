//! `keystead`: the admin command line for a keystead API-key store.
//!
//! Every command opens the store, does one thing and exits; see docs/cli.md for the reference
//! (commands, JSON fields, exit codes).

mod duration;
mod error;
mod import;
mod output;
mod serve;
mod timefmt;
mod usage;

use std::collections::BTreeMap;
use std::env;
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use keystead::{
    CreatedKey, KeyId, KeyInfo, KeyStatus, KeyStore, ListFilter, NewKey, Options, Zeroizing,
    DEFAULT_AUDIT_LIMIT, DEFAULT_PREFIX,
};
use serde_json::{json, Value};

use crate::duration::parse_duration;
use crate::error::{Failure, EXIT_NOT_VALID, EXIT_OK, EXIT_USAGE};
use crate::output::{key_json, quoted};
use crate::timefmt::{format_time, parse_time};

/// The store used when neither `--db` nor `$KEYSTEAD_DB` is given.
const DEFAULT_DB: &str = "./keystead.redb";
/// `verify` reads at most this much of stdin; anything longer is malformed anyway.
const MAX_VERIFY_INPUT: u64 = 16 * 1024;

const AFTER_HELP: &str = "\
Environment:
  KEYSTEAD_DB      the store file when --db is not given (default ./keystead.redb)
  KEYSTEAD_PEPPER  the store's pepper, if it was created with one: 32 to 1024 bytes, used as
                   given (`keystead pepper generate` prints a good one)

Exit status:
  0  success (verify: the key is valid)
  1  verify: the key is not valid
  2  bad usage or input (bad argument, unknown key id, refused change)
  3  operational error (missing or corrupt store, wrong pepper, I/O, locked)
  4  the store's database cannot be reached now (nothing known about the key; retry later)";

#[derive(Parser, Debug)]
#[command(
    name = "keystead",
    version,
    about = "Create, inspect, rotate and verify the API keys of a keystead store",
    after_help = AFTER_HELP,
    propagate_version = true
)]
struct Cli {
    /// The store file [default: $KEYSTEAD_DB, else ./keystead.redb]
    #[arg(long, global = true, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Print JSON instead of text
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create the store (idempotent if it exists with the same prefix)
    Init {
        /// The prefix of every key the store issues: [a-z][a-z0-9_]{0,15}
        #[arg(long, value_name = "PREFIX", default_value = DEFAULT_PREFIX)]
        prefix: String,
    },
    /// Create a key and print it (once) on stdout; creates the store if missing
    Create(CreateArgs),
    /// List keys
    List(ListArgs),
    /// Show one key
    Show {
        /// The key's 12-character id (not the full key)
        id: String,
    },
    /// Rename a key
    Rename {
        /// The key's 12-character id (not the full key)
        id: String,
        /// The new name
        name: String,
    },
    /// Stop a key from verifying until `enable`
    Disable {
        /// The key's 12-character id (not the full key)
        id: String,
    },
    /// Let a disabled key verify again
    Enable {
        /// The key's 12-character id (not the full key)
        id: String,
    },
    /// Permanently stop a key from verifying
    Revoke {
        /// The key's 12-character id (not the full key)
        id: String,
    },
    /// Delete a key and its usage counts (its audit entries stay)
    Delete {
        /// The key's 12-character id (not the full key)
        id: String,
    },
    /// Replace a key's scopes
    Scopes {
        /// The key's 12-character id (not the full key)
        id: String,
        /// The new scopes, e.g. chat:completions
        #[arg(value_name = "SCOPE", required_unless_present = "clear")]
        scopes: Vec<String>,
        /// Remove every scope
        #[arg(long, conflicts_with = "scopes")]
        clear: bool,
    },
    /// Replace a key's metadata
    Meta {
        /// The key's 12-character id (not the full key)
        id: String,
        /// The new metadata entries
        #[arg(value_name = "K=V", value_parser = parse_entry, required_unless_present = "clear")]
        entries: Vec<(String, String)>,
        /// Remove all metadata
        #[arg(long, conflicts_with = "entries")]
        clear: bool,
    },
    /// Set or clear a key's expiry
    Expire {
        /// The key's 12-character id (not the full key)
        id: String,
        #[command(flatten)]
        when: ExpireWhen,
    },
    /// Issue a replacement key; the old one keeps working for a grace period
    Rotate {
        /// The key's 12-character id (not the full key)
        id: String,
        /// How long the old key keeps working
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = duration_arg)]
        grace: DurationArg,
    },
    /// Verify a key, or an Authorization header value, read from stdin
    Verify {
        /// A scope the key must grant (repeatable)
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
    },
    /// Daily successful verifications of a key as a chart, or the busiest keys (--top N)
    Usage(usage::UsageArgs),
    /// The audit log of changes, newest first
    Audit {
        /// At most this many entries
        #[arg(long, value_name = "N", default_value_t = DEFAULT_AUDIT_LIMIT,
              value_parser = clap::value_parser!(u64).range(1..).try_map(usize::try_from))]
        limit: usize,
    },
    /// Create many keys from a JSON Lines file, all in one transaction; print them as JSON Lines
    Import {
        /// One JSON object a line: {"name", "scopes", "metadata", "expires_at" | "expires_in"};
        /// `-` reads stdin
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Key counts by status, the file's size and the time of the last change
    Stats,
    /// Check the store: the storage engine's integrity check and every key record (exit 3 on damage)
    Check,
    /// Answer key checks over HTTP for gateways (nginx, Caddy, Envoy, Traefik); docs/gateways.md
    Serve(serve::ServeArgs),
    /// Peppers (the secret mixed into every hash)
    Pepper {
        #[command(subcommand)]
        command: PepperCommand,
    },
}

#[derive(Subcommand, Debug)]
enum PepperCommand {
    /// Print a new pepper (32 random bytes, base64) to use as it is for $KEYSTEAD_PEPPER
    Generate,
}

#[derive(Args, Debug)]
struct CreateArgs {
    /// A descriptive name, e.g. dev-server-integration
    #[arg(long)]
    name: String,
    /// A scope the key grants (repeatable)
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// A metadata entry (repeatable)
    #[arg(long = "meta", value_name = "K=V", value_parser = parse_entry)]
    meta: Vec<(String, String)>,
    /// Expire after this long, e.g. 90d, 24h, 15m, 30s
    #[arg(long, value_name = "DURATION", value_parser = duration_arg,
          conflicts_with = "expires_at")]
    expires_in: Option<DurationArg>,
    /// Expire at this time, e.g. 2026-12-31T23:59:59Z or 2026-12-31
    #[arg(long, value_name = "RFC3339", value_parser = time_arg)]
    expires_at: Option<TimeArg>,
}

#[derive(Args, Debug)]
struct ListArgs {
    /// Only keys with this status
    #[arg(long, value_enum, default_value_t = StatusFilter::All)]
    status: StatusFilter,
    /// Only keys that grant this scope
    #[arg(long, value_name = "SCOPE")]
    scope: Option<String>,
    /// Only keys whose name starts with this
    #[arg(long, value_name = "PREFIX")]
    name_prefix: Option<String>,
    /// Only unexpired keys that expire within this long, e.g. 7d
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    expiring_within: Option<DurationArg>,
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
struct ExpireWhen {
    /// Expire after this long, e.g. 30d
    #[arg(long = "in", value_name = "DURATION", value_parser = duration_arg)]
    within: Option<DurationArg>,
    /// Expire at this time, e.g. 2026-12-31T23:59:59Z
    #[arg(long, value_name = "RFC3339", value_parser = time_arg)]
    at: Option<TimeArg>,
    /// Never expire
    #[arg(long)]
    never: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum StatusFilter {
    Active,
    Disabled,
    Revoked,
    Expired,
    All,
}

/// A duration as given on the command line, kept for messages.
#[derive(Clone, Debug)]
struct DurationArg {
    raw: String,
    value: Duration,
}

fn duration_arg(text: &str) -> Result<DurationArg, String> {
    parse_duration(text).map(|value| DurationArg {
        raw: text.to_owned(),
        value,
    })
}

/// A time as given on the command line, kept for messages.
#[derive(Clone, Debug)]
struct TimeArg {
    raw: String,
    value: SystemTime,
}

fn time_arg(text: &str) -> Result<TimeArg, String> {
    parse_time(text).map(|value| TimeArg {
        raw: text.to_owned(),
        value,
    })
}

/// `K=V`: the key is everything before the first `=` and must not be empty; V may be.
fn parse_entry(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        Some(_) => Err("the metadata key before `=` is empty; expected K=V".to_owned()),
        None => Err("there is no `=`; expected K=V, e.g. owner=platform-team".to_owned()),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_failure(&e),
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => failure.report(),
    }
}

/// Help and version go to stdout with exit 0; every usage error exits 2 as `keystead: ...`.
fn clap_failure(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(EXIT_USAGE)
        }
        _ => {
            // clap quotes the offending argument, which may be a key (`keystead verify KEY`).
            let text = e.to_string();
            let text = keystead::redact_keys(&text);
            eprint!(
                "keystead: {}",
                text.strip_prefix("error: ").unwrap_or(&text)
            );
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// What every command needs: where the store is and how to print.
struct Ctx {
    db: PathBuf,
    json: bool,
}

fn run(cli: Cli) -> Result<u8, Failure> {
    let ctx = Ctx {
        db: store_path(cli.db)?,
        json: cli.json,
    };
    match cli.command {
        Command::Init { prefix } => init(&ctx, prefix),
        Command::Create(args) => create(&ctx, args),
        Command::List(args) => list(&ctx, args),
        Command::Show { id } => show(&ctx, &id),
        Command::Rename { id, name } => {
            let id = key_id(&id)?;
            let info = open_existing(&ctx)?.rename(id, &name)?;
            report_change(
                &ctx,
                &info,
                format!("Renamed key {id} to {}.", quoted(&name)),
            )
        }
        Command::Disable { id } => state_change(&ctx, &id, "Disabled", KeyStore::disable),
        Command::Enable { id } => state_change(&ctx, &id, "Enabled", KeyStore::enable),
        Command::Revoke { id } => state_change(&ctx, &id, "Revoked", KeyStore::revoke),
        Command::Delete { id } => delete(&ctx, &id),
        Command::Scopes { id, scopes, clear } => {
            let id = key_id(&id)?;
            let scopes = if clear { Vec::new() } else { scopes };
            let info = open_existing(&ctx)?.set_scopes(id, &scopes)?;
            let granted = if info.scopes().is_empty() {
                "no scopes".to_owned()
            } else {
                info.scopes().join(", ")
            };
            let text = format!("Key {id} {} now grants: {granted}.", quoted(info.name()));
            report_change(&ctx, &info, text)
        }
        Command::Meta { id, entries, clear } => {
            let id = key_id(&id)?;
            let metadata = if clear {
                BTreeMap::new()
            } else {
                metadata_map(entries, "")?
            };
            let info = open_existing(&ctx)?.set_metadata(id, metadata)?;
            let text = if info.metadata().is_empty() {
                format!("Key {id} {} now has no metadata.", quoted(info.name()))
            } else {
                let entries: Vec<String> = info
                    .metadata()
                    .iter()
                    .map(|(k, v)| format!("{k}={}", output::printable(v)))
                    .collect();
                format!(
                    "Key {id} {} now has metadata: {}.",
                    quoted(info.name()),
                    entries.join(", ")
                )
            };
            report_change(&ctx, &info, text)
        }
        Command::Expire { id, when } => expire(&ctx, &id, when),
        Command::Rotate { id, grace } => rotate(&ctx, &id, &grace),
        Command::Verify { scopes } => verify(&ctx, &scopes),
        Command::Usage(args) => usage::run(&ctx, args),
        Command::Audit { limit } => audit(&ctx, limit),
        Command::Check => check(&ctx),
        Command::Stats => stats(&ctx),
        Command::Import { file } => import::import(&ctx, &file),
        Command::Serve(args) => serve::serve(&ctx, args),
        Command::Pepper {
            command: PepperCommand::Generate,
        } => pepper_generate(&ctx),
    }
}

// ---- the store ----

/// `--db` > `$KEYSTEAD_DB` (if not empty) > `./keystead.redb`.
fn store_path(flag: Option<PathBuf>) -> Result<PathBuf, Failure> {
    match flag {
        Some(path) if path.as_os_str().is_empty() => {
            Err(Failure::usage("--db must not be an empty path"))
        }
        Some(path) => Ok(path),
        None => Ok(env::var_os("KEYSTEAD_DB")
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_DB), PathBuf::from)),
    }
}

/// Options for this short-lived process: usage is flushed on close, not in the background.
/// The audit actor is `cli:$USER` (or `$LOGNAME`), `cli` when neither is set; a user name the
/// core would refuse as an actor (too long, control or invisible characters) is an error
/// here rather than a silent `cli`, so the audit log never misattributes a change.
fn options() -> Result<Options, Failure> {
    let user = env::var_os("USER")
        .filter(|u| !u.is_empty())
        .or_else(|| env::var_os("LOGNAME").filter(|u| !u.is_empty()));
    let actor = match user {
        None => "cli".to_owned(),
        Some(user) => {
            let Some(user) = user.to_str() else {
                return Err(Failure::usage(
                    "$USER is not valid UTF-8, so it cannot be recorded as the audit actor",
                ));
            };
            let actor = format!("cli:{user}");
            if actor.chars().count() > keystead::MAX_ACTOR_CHARS
                || actor
                    .chars()
                    .any(|c| c.is_control() || keystead::is_invisible_char(c))
            {
                return Err(Failure::usage(format!(
                    "$USER is not usable as the audit actor: it must be at most {} characters \
                     without control or invisible characters",
                    keystead::MAX_ACTOR_CHARS - "cli:".len()
                )));
            }
            actor
        }
    };
    let mut options = Options::new().flush_interval(Duration::ZERO).actor(actor);
    if let Some(pepper) = env::var_os("KEYSTEAD_PEPPER") {
        if pepper.is_empty() {
            return Err(Failure::usage(
                "KEYSTEAD_PEPPER is set but empty (unset it for a store without a pepper)",
            ));
        }
        options = options.pepper(pepper.into_encoded_bytes());
    }
    Ok(options)
}

/// The store location as it may be printed: a database URL's password masked.
fn shown(ctx: &Ctx) -> String {
    keystead::display_location(&ctx.db.to_string_lossy())
}

/// Whether the location names a database (`postgres://…`) rather than a file.
fn is_database(ctx: &Ctx) -> bool {
    ctx.db.to_str().is_some_and(|s| {
        let lower = s.to_ascii_lowercase();
        lower.starts_with("postgres://") || lower.starts_with("postgresql://")
    })
}

fn store_exists(ctx: &Ctx) -> Result<bool, Failure> {
    if is_database(ctx) {
        // A database has no file to look for: open without creating.
        return match KeyStore::open(&ctx.db, options()?.create_if_missing(false)) {
            Ok(store) => store.close().map(|()| true).map_err(Failure::from),
            Err(keystead::Error::StoreNotFound) => Ok(false),
            Err(e) => Err(Failure::from(e).context(format!("cannot open {}", shown(ctx)))),
        };
    }
    ctx.db.try_exists().map_err(|e| {
        Failure::operational(format!("cannot check for a store at {}: {e}", shown(ctx)))
    })
}

fn open(ctx: &Ctx, options: Options) -> Result<KeyStore, Failure> {
    let store = KeyStore::open(&ctx.db, options).map_err(|e| {
        let hint = match e {
            keystead::Error::WrongPepper if env::var_os("KEYSTEAD_PEPPER").is_some() => {
                " (check $KEYSTEAD_PEPPER)"
            }
            keystead::Error::WrongPepper => " (set $KEYSTEAD_PEPPER)",
            keystead::Error::StoreNotFound => {
                " (create one with `keystead init`, or give the path of an existing one with \
                 --db or $KEYSTEAD_DB)"
            }
            _ => "",
        };
        let mut failure = Failure::from(e).context(format!("cannot open {}", shown(ctx)));
        failure.message.push_str(hint);
        failure
    })?;
    warn_if_readable_by_others(ctx);
    Ok(store)
}

/// A store others may read is opened (one they may write is refused by the core), with a
/// warning: a copy gives them every record, and without a pepper lets them guess offline.
fn warn_if_readable_by_others(ctx: &Ctx) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(&ctx.db) {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o044 != 0 {
                eprintln!(
                    "keystead: warning: {} is readable by group or others (mode {mode:04o}); \
                     run `chmod 600` on it",
                    shown(ctx)
                );
            }
        }
    }
}

/// Opens a store that must exist already; never creates or initializes a file (the core
/// refuses a missing or empty one with `StoreNotFound`).
fn open_existing(ctx: &Ctx) -> Result<KeyStore, Failure> {
    open(ctx, options()?.create_if_missing(false))
}

/// A key id as given on the command line: the 12-character id. A full key is refused (it
/// would sit in shell history and be visible to other users in `ps`), with its id, which is
/// public, but never its secret. Any other value is echoed in the error only if it is short,
/// since a long one may be a mistyped key.
fn key_id(text: &str) -> Result<KeyId, Failure> {
    if let Ok(id) = text.parse::<KeyId>() {
        return Ok(id);
    }
    const EXPOSED: &str = "it is not repeated here, but a key given on the command line is in \
                           your shell history and visible to other users (`ps`): treat it as \
                           exposed and rotate or revoke it";
    if let Ok(parts) = keystead::parse_key(text) {
        return Err(Failure::usage(format!(
            "a full key was given where a key id is expected; use its id {} instead ({EXPOSED})",
            parts.id
        )));
    }
    if keystead::redact_keys(text) != text {
        return Err(Failure::usage(format!(
            "something shaped like a key was given where a key id is expected ({EXPOSED})"
        )));
    }
    const HELP: &str = "an id is the 12 characters of [0-9A-Za-z] shown by `keystead list`";
    if text.chars().count() <= 16 {
        Err(Failure::usage(format!(
            "`{}` is not a key id: {HELP}",
            output::printable(text)
        )))
    } else {
        Err(Failure::usage(format!(
            "the key id given ({} characters) is neither a key id nor a well-formed key: {HELP}",
            text.chars().count()
        )))
    }
}

// ---- output ----

fn emit(text: &str) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::output(&e))
}

fn emit_json(value: &Value) -> Result<(), Failure> {
    emit(&format!("{value}\n"))
}

/// After a change: the key as JSON, or a one-line summary.
fn report_change(ctx: &Ctx, info: &KeyInfo, text: String) -> Result<u8, Failure> {
    if ctx.json {
        emit_json(&key_json(info))?;
    } else {
        emit(&format!("{text}\n"))?;
    }
    Ok(EXIT_OK)
}

/// Room for a new key's JSON object (the key, its id, name, scopes and metadata, which are
/// bounded by the core's limits) so that writing it never reallocates.
const NEW_KEY_JSON_CAPACITY: usize = 64 * 1024;

/// Prints a new key: alone on stdout (or in one JSON object), the id and a warning on stderr.
fn print_new_key(ctx: &Ctx, created: &CreatedKey, headline: &str) -> Result<(), Failure> {
    let id = created.info().id();
    let printed = if ctx.json {
        let mut value = key_json(created.info());
        if let Value::Object(map) = &mut value {
            map.insert("key".to_owned(), Value::String(created.key().to_owned()));
        }
        // Written into a buffer sized up front: growing it would free unwiped copies.
        let mut text = Zeroizing::new(String::with_capacity(NEW_KEY_JSON_CAPACITY));
        let written = writeln!(text, "{value}");
        if let Value::Object(map) = &mut value {
            if let Some(Value::String(key)) = map.remove("key") {
                drop(Zeroizing::new(key));
            }
        }
        written.map_err(|_| Failure::operational("cannot format the new key".to_owned()))?;
        emit(&text)
    } else {
        let mut text = Zeroizing::new(String::with_capacity(created.key().len() + 1));
        text.push_str(created.key());
        text.push('\n');
        emit(&text)
    };
    printed.map_err(|f| {
        Failure { quiet: false, ..f }.context(format!(
            "key {id} was created but could not be printed; revoke it with `keystead revoke {id}`"
        ))
    })?;
    eprintln!("{headline}");
    eprintln!("Copy the key now: only its hash is stored, so it will not be shown again.");
    Ok(())
}

// ---- commands ----

fn init(ctx: &Ctx, prefix: String) -> Result<u8, Failure> {
    let existed = store_exists(ctx)?;
    let store = open(ctx, options()?.prefix(prefix))?;
    let prefix = store.prefix().to_owned();
    store.close()?;
    let path = shown(ctx);
    if ctx.json {
        emit_json(&json!({
            "path": path.to_string(),
            "prefix": prefix,
            "created": !existed,
        }))?;
    } else if existed {
        emit(&format!(
            "Store {path} already exists with key prefix `{prefix}`; nothing to do.\n"
        ))?;
    } else {
        emit(&format!(
            "Created store {path}; its keys will start with `{prefix}_`.\n"
        ))?;
    }
    Ok(EXIT_OK)
}

/// Metadata from `K=V` arguments; a key given twice is an error rather than a silent choice.
fn metadata_map(
    entries: Vec<(String, String)>,
    flag: &str,
) -> Result<BTreeMap<String, String>, Failure> {
    let mut map = BTreeMap::new();
    for (k, v) in entries {
        if map.contains_key(&k) {
            return Err(Failure::usage(format!(
                "metadata key `{}` is given twice{flag}",
                k.escape_debug()
            )));
        }
        map.insert(k, v);
    }
    Ok(map)
}

/// The expiry from `--…-in DURATION` or `--…-at TIME`; it must be in the future and
/// representable (up to 9999-12-31).
fn expiry(
    within: Option<&DurationArg>,
    at: Option<&TimeArg>,
    in_flag: &str,
    at_flag: &str,
) -> Result<Option<SystemTime>, Failure> {
    let now = SystemTime::now();
    if let Some(d) = within {
        return match now.checked_add(d.value) {
            Some(t) if t <= timefmt::latest() => Ok(Some(t)),
            _ => Err(Failure::usage(format!(
                "{in_flag} {} is too far in the future (the latest expiry is {})",
                d.raw,
                format_time(timefmt::latest())
            ))),
        };
    }
    if let Some(t) = at {
        if t.value <= now {
            return Err(Failure::usage(format!(
                "{at_flag} {} is in the past; an expiry must be in the future",
                t.raw
            )));
        }
        return Ok(Some(t.value));
    }
    Ok(None)
}

fn create(ctx: &Ctx, args: CreateArgs) -> Result<u8, Failure> {
    // Everything the CLI itself can check is checked before the store is touched.
    let metadata = metadata_map(args.meta, " (--meta)")?;
    let expires_at = expiry(
        args.expires_in.as_ref(),
        args.expires_at.as_ref(),
        "--expires-in",
        "--expires-at",
    )?;
    let mut new = NewKey::new(args.name)
        .scopes(args.scopes)
        .metadata(metadata);
    if let Some(at) = expires_at {
        new = new.expires_at(at);
    }
    // Check the key before the store is opened, so a rejected command creates no file.
    new.validate()?;
    let existed = store_exists(ctx)?;
    let store = open(ctx, options()?)?;
    let created = store.create(new)?;
    if !existed {
        eprintln!(
            "Created store {}; its keys start with `{}_`.",
            shown(ctx),
            store.prefix()
        );
    }
    let info = created.info();
    let mut headline = format!("Created key {} {}", info.id(), quoted(info.name()));
    if let Some(at) = info.expires_at() {
        headline.push_str(&format!(", expiring {}", format_time(at)));
    }
    headline.push('.');
    print_new_key(ctx, &created, &headline)?;
    Ok(EXIT_OK)
}

fn list(ctx: &Ctx, args: ListArgs) -> Result<u8, Failure> {
    let mut filter = ListFilter::new();
    let status = match args.status {
        StatusFilter::Active => Some(KeyStatus::Active),
        StatusFilter::Disabled => Some(KeyStatus::Disabled),
        StatusFilter::Revoked => Some(KeyStatus::Revoked),
        StatusFilter::Expired => Some(KeyStatus::Expired),
        StatusFilter::All => None,
    };
    if let Some(status) = status {
        filter = filter.status(status);
    }
    if let Some(scope) = args.scope {
        filter = filter.scope(scope);
    }
    if let Some(prefix) = args.name_prefix {
        filter = filter.name_prefix(prefix);
    }
    if let Some(within) = args.expiring_within {
        filter = filter.expiring_within(within.value);
    }
    let keys = open_existing(ctx)?.list(&filter)?;
    if ctx.json {
        emit_json(&Value::Array(keys.iter().map(key_json).collect()))?;
    } else if keys.is_empty() {
        emit("No keys.\n")?;
    } else {
        emit(&output::key_table(&keys))?;
    }
    Ok(EXIT_OK)
}

fn show(ctx: &Ctx, id: &str) -> Result<u8, Failure> {
    let id = key_id(id)?;
    let info = open_existing(ctx)?
        .get(id)?
        .ok_or(keystead::Error::KeyNotFound(id))?;
    if ctx.json {
        emit_json(&key_json(&info))?;
    } else {
        emit(&output::key_details(&info))?;
    }
    Ok(EXIT_OK)
}

fn state_change(
    ctx: &Ctx,
    id: &str,
    verb: &str,
    change: fn(&KeyStore, KeyId) -> keystead::Result<KeyInfo>,
) -> Result<u8, Failure> {
    let id = key_id(id)?;
    let info = change(&open_existing(ctx)?, id)?;
    let text = format!(
        "{verb} key {id} {} (status: {}).",
        quoted(info.name()),
        info.status()
    );
    report_change(ctx, &info, text)
}

fn delete(ctx: &Ctx, id: &str) -> Result<u8, Failure> {
    let id = key_id(id)?;
    let store = open_existing(ctx)?;
    let info = store.get(id)?.ok_or(keystead::Error::KeyNotFound(id))?;
    store.delete(id)?;
    if ctx.json {
        emit_json(&json!({ "id": id.to_string(), "name": info.name(), "deleted": true }))?;
    } else {
        emit(&format!("Deleted key {id} {}.\n", quoted(info.name())))?;
    }
    Ok(EXIT_OK)
}

fn expire(ctx: &Ctx, id: &str, when: ExpireWhen) -> Result<u8, Failure> {
    let id = key_id(id)?;
    let at = if when.never {
        None
    } else {
        expiry(when.within.as_ref(), when.at.as_ref(), "--in", "--at")?
    };
    let info = open_existing(ctx)?.set_expiry(id, at)?;
    let text = match info.expires_at() {
        Some(t) => format!(
            "Key {id} {} now expires at {}.",
            quoted(info.name()),
            format_time(t)
        ),
        None => format!("Key {id} {} now never expires.", quoted(info.name())),
    };
    report_change(ctx, &info, text)
}

fn rotate(ctx: &Ctx, id: &str, grace: &DurationArg) -> Result<u8, Failure> {
    let id = key_id(id)?;
    let store = open_existing(ctx)?;
    let had_expiry = store.get(id)?.and_then(|old| old.expires_at()).is_some();
    let created = store.rotate(id, grace.value)?;
    let new_id = created.info().id();
    // Only for the message: when the old key stops (its own expiry may be sooner).
    let old_until = store
        .get(id)
        .ok()
        .flatten()
        .and_then(|old| old.expires_at())
        .map_or_else(String::new, |at| {
            format!("; the old key keeps working until {}", format_time(at))
        });
    let headline = format!(
        "Rotated key {id} {}: the new key is {new_id}{old_until} (grace {}).",
        quoted(created.info().name()),
        grace.raw
    );
    print_new_key(ctx, &created, &headline)?;
    if had_expiry {
        eprintln!(
            "Note: the new key does not expire (rotation does not carry the expiry over); \
             set one with `keystead expire {new_id} --in <DURATION>`."
        );
    }
    Ok(EXIT_OK)
}

fn verify(ctx: &Ctx, scopes: &[String]) -> Result<u8, Failure> {
    let stdin = io::stdin();
    if stdin.is_terminal() && !ctx.json {
        eprintln!("Reading a key or an Authorization header value from stdin (end with Ctrl-D)...");
    }
    // Sized up front so that reading never reallocates and leaves unwiped copies behind.
    let mut input = Zeroizing::new(Vec::with_capacity(MAX_VERIFY_INPUT as usize + 1));
    stdin
        .lock()
        .take(MAX_VERIFY_INPUT)
        .read_to_end(&mut input)
        .map_err(|e| Failure::operational(format!("cannot read stdin: {e}")))?;
    let mut presented: &[u8] = &input;
    if let Some(rest) = presented.strip_suffix(b"\n") {
        presented = rest.strip_suffix(b"\r").unwrap_or(rest);
    }
    let required: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let store = open_existing(ctx)?;
    // The core's header parser decides: `Bearer <token>`, another scheme or nothing at all is
    // an `Authorization` value; anything it finds malformed (a bare key has no scheme) is
    // checked as a bare key, which is malformed too unless it is one.
    let check = match keystead::parse_authorization_header(presented) {
        Ok(_) | Err(keystead::HeaderError::Missing) => store.verify_header(presented, &required)?,
        Err(_) => {
            // A key is ASCII: anything that is not UTF-8 is malformed either way.
            let text = Zeroizing::new(String::from_utf8_lossy(presented).into_owned());
            store.verify(&text, &required)?
        }
    };
    if ctx.json {
        emit_json(&json!({
            "code": check.code(),
            "ok": check.is_valid(),
            "http_status": check.http_status(),
            "www_authenticate": check.www_authenticate(),
            // The key object only for a valid key; a refused one is named by its id only.
            "key": check.key().map(key_json),
            "key_id": check.key_id().map(|id| id.to_string()),
        }))?;
    } else {
        let mut line = check.code().to_owned();
        if let Some(key) = check.key() {
            line.push_str(&format!(": key {} {}", key.id(), quoted(key.name())));
        } else if let Some(id) = check.key_id() {
            line.push_str(&format!(": key {id}"));
        }
        if check.outcome() == keystead::Outcome::InsufficientScope {
            line.push_str(&format!(" lacks a required scope ({})", required.join(" ")));
        }
        emit(&format!("{line}\n"))?;
    }
    // Surfaces a failure to record the use, which dropping the store would hide.
    store.close()?;
    Ok(if check.is_valid() {
        EXIT_OK
    } else {
        EXIT_NOT_VALID
    })
}

/// `keystead pepper generate`: 32 bytes from the system's CSPRNG, printed in base64. The
/// printed text itself (44 ASCII bytes, 256 bits of entropy) is the pepper: `$KEYSTEAD_PEPPER`
/// and the bindings take the pepper's bytes as given, never decoded, so the same string opens
/// the store everywhere.
fn pepper_generate(ctx: &Ctx) -> Result<u8, Failure> {
    use ring::rand::SecureRandom;
    let mut bytes = Zeroizing::new([0u8; 32]);
    ring::rand::SystemRandom::new()
        .fill(&mut bytes[..])
        .map_err(|_| Failure::operational("the system random number generator failed"))?;
    let pepper = output::base64(&bytes[..]);
    let text = if ctx.json {
        let mut value = json!({ "pepper": pepper.as_str() });
        let text = Zeroizing::new(format!("{value}\n"));
        if let Value::Object(map) = &mut value {
            if let Some(Value::String(p)) = map.remove("pepper") {
                drop(Zeroizing::new(p));
            }
        }
        text
    } else {
        Zeroizing::new(format!("{}\n", pepper.as_str()))
    };
    emit(&text)?;
    eprintln!(
        "Keep this pepper in a secret manager, not beside the store; set it (the printed text, \
         as is) as $KEYSTEAD_PEPPER before `keystead init`. A lost pepper cannot be recovered."
    );
    Ok(EXIT_OK)
}

/// `keystead stats`: what an operator sizes a store by — keys by status, the file's bytes (and
/// per key), the last change. (The storage engine's own table and page statistics stay in the
/// benchmark driver's `diag`: nothing above the core names the engine.)
fn stats(ctx: &Ctx) -> Result<u8, Failure> {
    let store = open_existing(ctx)?;
    let keys = store.list(&ListFilter::new())?;
    let last_change = store.audit(None, 1)?.first().map(|e| e.at);
    store.close()?;
    // A database store has no file to size (its tables: docs/fleet.md, "Schema").
    let file_bytes = if is_database(ctx) {
        None
    } else {
        Some(
            std::fs::metadata(&ctx.db)
                .map_err(|e| Failure::operational(format!("cannot stat {}: {e}", shown(ctx))))?
                .len(),
        )
    };
    let mut counts = BTreeMap::new();
    for key in &keys {
        *counts.entry(key.status().to_string()).or_insert(0u64) += 1;
    }
    let count = |status: &str| counts.get(status).copied().unwrap_or(0);
    let total = keys.len() as u64;
    let per_key = file_bytes.filter(|_| total > 0).map(|bytes| bytes / total);
    if ctx.json {
        emit_json(&json!({
            "path": shown(ctx),
            "file_bytes": file_bytes,
            "bytes_per_key": per_key,
            "keys": {
                "total": total,
                "active": count("active"),
                "disabled": count("disabled"),
                "revoked": count("revoked"),
                "expired": count("expired"),
            },
            "last_change_at": last_change.map(format_time),
        }))?;
    } else {
        let per_key = per_key.map_or_else(String::new, |b| format!(", {b} per key"));
        let last = last_change.map_or_else(|| "never".to_owned(), format_time);
        let size = match file_bytes {
            Some(bytes) => format!("File: {bytes} bytes{per_key}."),
            None => "Database: PostgreSQL (no file).".to_owned(),
        };
        emit(&format!(
            "Store {}: {} ({} active, {} disabled, {} revoked, {} expired).\n\
             {size}\nLast change: {last}.\n",
            shown(ctx),
            plural(total, "key"),
            count("active"),
            count("disabled"),
            count("revoked"),
            count("expired"),
        ))?;
    }
    Ok(EXIT_OK)
}

/// `keystead check`: opens the store as every command does (refusing a missing file, a file
/// that is not a store, a wrong pepper), decodes every key record (each is authenticated under
/// the pepper, so an edited or damaged record is `Corrupt`), then runs the storage engine's
/// integrity check of the whole file. Exit 0 only if all of it holds, 3 otherwise.
fn check(ctx: &Ctx) -> Result<u8, Failure> {
    // The storage engine (redb 4.6) panics instead of returning an error on some damaged pages.
    // Here that is a finding, not a crash: caught, reported as damage (exit 3), and the panic
    // message is not printed as a crash report.
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check_store(ctx)));
    drop(std::panic::take_hook());
    result.unwrap_or_else(|payload| {
        let why = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no detail".to_owned());
        Err(Failure::operational(format!(
            "{} is damaged: the storage engine failed reading it ({why})",
            shown(ctx)
        )))
    })
}

fn check_store(ctx: &Ctx) -> Result<u8, Failure> {
    let store = open_existing(ctx)?;
    let keys = store.list(&ListFilter::new())?.len();
    store.close()?;
    let intact = KeyStore::check_integrity(&ctx.db)
        .map_err(|e| Failure::from(e).context(format!("{} is damaged", shown(ctx))))?;
    if !intact {
        return Err(Failure::operational(format!(
            "{} was damaged: the storage engine's integrity check failed and repaired what it \
             could; check the keys (`keystead list`) and restore from a backup if any are missing",
            shown(ctx)
        )));
    }
    let path = shown(ctx);
    if ctx.json {
        emit_json(&json!({ "path": path, "intact": true, "keys": keys }))?;
    } else {
        emit(&format!(
            "Store {path} is intact ({}).\n",
            plural(keys as u64, "key")
        ))?;
    }
    Ok(EXIT_OK)
}

/// `1 use`, `2 uses`.
fn plural(count: u64, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

fn audit(ctx: &Ctx, limit: usize) -> Result<u8, Failure> {
    let entries = open_existing(ctx)?.audit(None, limit)?;
    if ctx.json {
        emit_json(&Value::Array(
            entries.iter().map(output::audit_json).collect(),
        ))?;
    } else if entries.is_empty() {
        emit("No audit entries.\n")?;
    } else {
        emit(&output::audit_table(&entries))?;
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_limit_defaults_to_the_core_constant() {
        let cli = Cli::try_parse_from(["keystead", "audit"]).unwrap();
        assert!(
            matches!(cli.command, Command::Audit { limit } if limit == DEFAULT_AUDIT_LIMIT),
            "{:?}",
            cli.command
        );
        assert!(Cli::try_parse_from(["keystead", "audit", "--limit", "0"]).is_err());
    }
}
