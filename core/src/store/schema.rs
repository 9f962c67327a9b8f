//! What a store must be to open: schema version, prefix and pepper checks, the meta rows,
//! the migration of version-1 records, and the parsing of a store's location.

use std::path::Path;

use subtle::ConstantTimeEq;

use crate::backend::{Backend, FileBackend, FileOptions, KeyQuery, MemoryBackend, Meta};
use crate::error::{Error, Result};
use crate::hash::Hasher;
use crate::key;
use crate::model::{self};
use crate::record::Record;

use super::shared::row_of;

/// Newest store schema this build reads and writes.
pub(super) const SCHEMA_VERSION: u32 = 1;
pub(super) const META_SCHEMA: &str = "schema_version";
pub(super) const META_PREFIX: &str = "prefix";
pub(super) const META_PEPPER_CHECK: &str = "pepper_check";
pub(super) const META_CREATED_AT: &str = "created_at";

/// What [`check_store`] found.
pub(super) struct StoreCheck {
    pub(super) prefix: String,
    /// A peppered store written before key records were authenticated: its records are
    /// version 1 and its pepper check the version-1 value (see [`migrate_records`]).
    pub(super) legacy_records: bool,
}

/// Checks a store's schema version, prefix and pepper.
pub(super) fn check_store(
    meta: &Meta,
    requested: Option<&str>,
    hasher: &Hasher,
) -> Result<StoreCheck> {
    let schema = meta
        .get(META_SCHEMA)
        .ok_or_else(|| Error::Corrupt("not a keystead store (no schema version)".into()))?;
    let schema = <[u8; 4]>::try_from(schema.as_slice())
        .map(u32::from_le_bytes)
        .map_err(|_| Error::Corrupt("schema version has the wrong length".into()))?;
    if schema > SCHEMA_VERSION {
        return Err(Error::UnsupportedVersion {
            what: "schema",
            found: schema,
            supported: SCHEMA_VERSION,
        });
    }
    if schema == 0 {
        return Err(Error::Corrupt("schema version 0".into()));
    }
    let stored = meta
        .get(META_PREFIX)
        .and_then(|p| String::from_utf8(p.clone()).ok())
        .filter(|p| key::is_valid_prefix(p))
        .ok_or_else(|| Error::Corrupt("missing or invalid prefix".into()))?;
    if let Some(requested) = requested {
        if requested != stored {
            return Err(Error::PrefixMismatch {
                stored,
                requested: requested.to_owned(),
            });
        }
    }
    let check = meta
        .get(META_PEPPER_CHECK)
        .ok_or_else(|| Error::Corrupt("missing pepper check".into()))?;
    let current = bool::from(check.as_slice().ct_eq(&hasher.pepper_check()));
    let legacy = hasher
        .legacy_pepper_check()
        .is_some_and(|legacy| bool::from(check.as_slice().ct_eq(&legacy)));
    if !current && !legacy {
        return Err(Error::WrongPepper);
    }
    Ok(StoreCheck {
        prefix: stored,
        legacy_records: legacy,
    })
}

/// Authenticates every key record of a peppered store written before records were: each
/// version-1 record (CRC-checked) is rewritten as version 2 under the record key, and the
/// pepper check becomes the version-2 value, all in one transaction (another handle may have
/// done it first: then nothing is written). From then on a version-1 record in this store is
/// `Corrupt`, and builds that predate authenticated records refuse it as `WrongPepper`.
pub(super) fn migrate_records(backend: &dyn Backend, hasher: &Hasher) -> Result<()> {
    backend.write(&mut |txn| -> Result<()> {
        let check = txn.meta(META_PEPPER_CHECK)?.unwrap_or_default();
        if bool::from(check.as_slice().ct_eq(&hasher.pepper_check())) {
            return Ok(());
        }
        let mut records = Vec::new();
        txn.list_keys(&KeyQuery::default(), &mut |id, bytes| {
            let record = Record::decode(bytes, None)?;
            if record.id != id {
                return Err(Error::Corrupt(
                    "key record: stored id does not match".into(),
                ));
            }
            records.push(record);
            Ok(true)
        })?;
        for record in &records {
            let sealed = record.encode(hasher.record_key());
            txn.put_key(&row_of(record, &sealed))?;
        }
        txn.set_meta(META_PEPPER_CHECK, &hasher.pepper_check())
    })?;
    Ok(())
}

/// Where a store lives, as named to [`KeyStore::open`].
#[derive(Clone, Copy)]
pub(super) enum Location<'a> {
    /// A redb file (the embedded default): a plain path or `file://PATH`.
    File(&'a Path),
    /// `memory:`: a new store in this process's memory.
    Memory,
    /// `postgres://…` or `postgresql://…` (feature `postgres`).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres(&'a str),
}

impl<'a> Location<'a> {
    /// The schemes `open` understands, for error messages.
    #[cfg(feature = "postgres")]
    pub(super) const SUPPORTED: &'static str =
        "a file path, `file://PATH`, `memory:` or `postgres://…` (`postgresql://…`)";
    #[cfg(not(feature = "postgres"))]
    pub(super) const SUPPORTED: &'static str = "a file path, `file://PATH` or `memory:`";

    /// The backend for this location, with its default settings.
    pub(super) fn backend(self) -> Result<Box<dyn Backend>> {
        Ok(match self {
            Location::File(path) => Box::new(FileBackend::new(path, FileOptions::new())),
            Location::Memory => Box::new(MemoryBackend::new()),
            #[cfg(feature = "postgres")]
            Location::Postgres(url) => Box::new(crate::backend::PostgresBackend::new(
                url,
                crate::backend::PostgresOptions::new(),
            )?),
            #[cfg(not(feature = "postgres"))]
            Location::Postgres(_) => {
                return Err(Error::invalid(format!(
                    "this build of keystead has no PostgreSQL support (cargo feature \
                     `postgres`); supported: {}",
                    Self::SUPPORTED
                )))
            }
        })
    }

    pub(super) fn parse(path: &'a Path) -> Result<Location<'a>> {
        let Some(text) = path.to_str() else {
            return Ok(Location::File(path));
        };
        if text == "memory:" {
            return Ok(Location::Memory);
        }
        let Some((scheme, rest)) = text.split_once("://") else {
            return Ok(Location::File(path));
        };
        let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !is_scheme {
            return Ok(Location::File(path));
        }
        match scheme.to_ascii_lowercase().as_str() {
            "file" if !rest.is_empty() => Ok(Location::File(Path::new(rest))),
            "file" => Err(Error::invalid("`file://` names no file")),
            "postgres" | "postgresql" => Ok(Location::Postgres(text)),
            _ => Err(Error::invalid(format!(
                "unknown store location scheme `{}://`; supported: {}",
                model::truncate_for_message(scheme),
                Self::SUPPORTED
            ))),
        }
    }
}
