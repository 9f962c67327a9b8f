//! Keeps each shard of a sharded lock on its own cache line, so threads working on different
//! shards do not invalidate each other's lines (false sharing).

use std::ops::Deref;

#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}
