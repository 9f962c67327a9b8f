//! `keystead import`: many keys from a JSON Lines file, created in one transaction.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use keystead::{CreatedKey, NewKey, Zeroizing};
use serde_json::{Map, Value};

use crate::duration::parse_duration;
use crate::error::{Failure, EXIT_OK};
use crate::output::printable;
use crate::timefmt::parse_time;
use crate::{expiry, open, options, store_exists, Ctx, DurationArg, TimeArg};

/// The fields a line may have; the same as `keystead create`'s options.
const FIELDS: [&str; 5] = ["name", "scopes", "metadata", "expires_at", "expires_in"];

/// Inputs at least this large (or of unknown size, from stdin) get a progress line on a
/// terminal.
const LARGE_INPUT: u64 = 256 * 1024;

/// A progress line on stderr, redrawn at most every 100 ms; drawn only when enabled.
struct Progress {
    enabled: bool,
    total: Option<u64>,
    last: Option<Instant>,
}

impl Progress {
    fn new(total: Option<u64>) -> Self {
        let large = total.is_none_or(|size| size >= LARGE_INPUT);
        Progress {
            enabled: large && io::stderr().is_terminal(),
            total,
            last: None,
        }
    }

    fn read(&mut self, lines: usize, bytes: u64) {
        if !self.enabled
            || self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(Instant::now());
        let share = match self.total {
            Some(total) if total > 0 => format!(" ({}%)", bytes.saturating_mul(100) / total),
            _ => String::new(),
        };
        eprint!("\rkeystead import: read {lines} lines{share}\x1b[K");
    }

    fn stage(&self, text: &str) {
        if self.enabled {
            eprint!("\rkeystead import: {text}\x1b[K");
        }
    }

    fn done(&self) {
        if self.enabled {
            eprint!("\r\x1b[K");
        }
    }
}

pub(crate) fn import(ctx: &Ctx, file: &Path) -> Result<u8, Failure> {
    let cannot_read =
        |e: io::Error| Failure::operational(format!("cannot read {}: {e}", file.display()));
    let (reader, total): (Box<dyn Read>, Option<u64>) = if file.as_os_str() == "-" {
        (Box::new(io::stdin()), None)
    } else {
        let f = File::open(file).map_err(cannot_read)?;
        let size = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
        (Box::new(f), size)
    };
    let mut progress = Progress::new(total);

    // Every line is checked before the store is opened: a bad one creates nothing, not even
    // the store file.
    let mut keys = Vec::new();
    let mut bytes = 0u64;
    let mut line = String::new();
    let mut reader = BufReader::new(reader);
    for n in 1.. {
        line.clear();
        let read = reader.read_line(&mut line).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                Failure::usage(format!("line {n}: not UTF-8"))
            } else {
                cannot_read(e)
            }
        })?;
        if read == 0 {
            break;
        }
        bytes += read as u64;
        if !line.trim().is_empty() {
            keys.push(new_key(&line).map_err(|f| f.context(format!("line {n}")))?);
        }
        progress.read(n, bytes);
    }
    if keys.is_empty() {
        progress.done();
        eprintln!("No keys to import; nothing was created.");
        return Ok(EXIT_OK);
    }

    let existed = store_exists(ctx)?;
    progress.stage(&format!(
        "creating {} keys in one transaction...",
        keys.len()
    ));
    let store = open(ctx, options()?)?;
    let created = store.create_many(keys);
    progress.done();
    let created = created?;
    if !existed {
        eprintln!(
            "Created store {}; its keys start with `{}_`.",
            ctx.db.display(),
            store.prefix()
        );
    }
    store.close()?;
    print_keys(&created).map_err(|f| {
        Failure { quiet: false, ..f }.context(format!(
            "{} keys were created but not all could be printed; `keystead audit` lists their \
             ids, to revoke them",
            created.len()
        ))
    })?;
    eprintln!("Imported {} keys into {}.", created.len(), ctx.db.display());
    eprintln!("Copy the keys now: only their hashes are stored, so they will not be shown again.");
    Ok(EXIT_OK)
}

/// One `{"id", "name", "key"}` line per key, in input order, each written from a buffer that
/// is wiped afterwards.
fn print_keys(created: &[CreatedKey]) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    for key in created {
        let id = Value::String(key.info().id().to_string());
        let name = Value::String(key.info().name().to_owned());
        // The name is at most 128 characters, each at most 6 bytes escaped.
        let mut text = Zeroizing::new(String::with_capacity(1024 + key.key().len()));
        text.push_str("{\"id\":");
        text.push_str(&id.to_string());
        text.push_str(",\"name\":");
        text.push_str(&name.to_string());
        text.push_str(",\"key\":\"");
        // A key is `[a-z0-9_]` and base62: nothing to escape.
        text.push_str(key.key());
        text.push_str("\"}\n");
        out.write_all(text.as_bytes())
            .map_err(|e| Failure::output(&e))?;
    }
    out.flush().map_err(|e| Failure::output(&e))
}

/// The key one line describes: `{"name", "scopes", "metadata", "expires_at" | "expires_in"}`.
/// Checked here as far as the core's rules go, so a bad line is found before anything is
/// created. Messages never quote a value (one may hold a key); field names only when short.
fn new_key(line: &str) -> Result<NewKey, Failure> {
    // serde_json's own message would count lines within this one line; only the column helps.
    let value: Value = serde_json::from_str(line).map_err(|e| match e.classify() {
        serde_json::error::Category::Eof => Failure::usage("the JSON object is not closed"),
        _ => Failure::usage(format!("not valid JSON (column {})", e.column())),
    })?;
    let Value::Object(map) = value else {
        return Err(Failure::usage("not a JSON object"));
    };
    if let Some(field) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        let shown = if field.chars().count() <= 16 {
            format!(" `{}`", printable(field))
        } else {
            String::new()
        };
        return Err(Failure::usage(format!(
            "unknown field{shown}; a line has {}",
            FIELDS.join(", ")
        )));
    }
    let name = match map.get("name") {
        Some(Value::String(name)) => name.clone(),
        Some(_) => return Err(Failure::usage("`name` is not a string")),
        None => return Err(Failure::usage("`name` is missing")),
    };
    let scopes = match map.get("scopes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| s.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Failure::usage("`scopes` holds something other than a string"))?,
        Some(_) => return Err(Failure::usage("`scopes` is not an array of strings")),
    };
    let metadata = match map.get("metadata") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(entries)) => metadata(entries)?,
        Some(_) => return Err(Failure::usage("`metadata` is not an object of strings")),
    };
    let text = |field: &str| match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Failure::usage(format!("`{field}` is not a string"))),
    };
    let within = text("expires_in")?
        .map(|raw| {
            parse_duration(&raw)
                .map(|value| DurationArg { raw, value })
                .map_err(|e| Failure::usage(format!("`expires_in`: {e}")))
        })
        .transpose()?;
    let at = text("expires_at")?
        .map(|raw| {
            parse_time(&raw)
                .map(|value| TimeArg { raw, value })
                .map_err(|e| Failure::usage(format!("`expires_at`: {e}")))
        })
        .transpose()?;
    if within.is_some() && at.is_some() {
        return Err(Failure::usage(
            "`expires_in` and `expires_at` exclude each other",
        ));
    }
    let mut new = NewKey::new(name).scopes(scopes).metadata(metadata);
    if let Some(at) = expiry(within.as_ref(), at.as_ref(), "expires_in", "expires_at")? {
        new = new.expires_at(at);
    }
    new.validate()?;
    Ok(new)
}

fn metadata(entries: &Map<String, Value>) -> Result<BTreeMap<String, String>, Failure> {
    entries
        .iter()
        .map(|(k, v)| match v {
            Value::String(v) => Ok((k.clone(), v.clone())),
            _ => Err(Failure::usage("a `metadata` value is not a string")),
        })
        .collect()
}
