//! A group of writes applied atomically, optionally only if some keys
//! still hold what the writer read.

/// One write of a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    /// Insert or overwrite a key.
    Put(Vec<u8>, Vec<u8>),
    /// Remove a key (no error if absent).
    Delete(Vec<u8>),
}

/// A condition of a [`Batch`]: the key holds this value (`None`: the key
/// is absent) when the batch is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// The key checked.
    pub key: Vec<u8>,
    /// The value it must hold, or `None` for "absent".
    pub value: Option<Vec<u8>>,
}

/// Writes that become visible together, and survive a crash together or not
/// at all. With expectations, the writes are applied only if every
/// expectation holds at that moment (compare-and-set), else none is and the
/// store answers [`super::StorageError::Conflict`]: how a relay notices that
/// another relay on the same database changed what it read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<BatchOp>,
    expects: Vec<Expect>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// Adds an insert.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::Put(key.into(), value.into()));
    }

    /// Adds a removal.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::Delete(key.into()));
    }

    /// Applies the batch only if `key` then holds `value` (`None`: only if
    /// it is absent).
    pub fn expect(&mut self, key: impl Into<Vec<u8>>, value: Option<Vec<u8>>) {
        self.expects.push(Expect {
            key: key.into(),
            value,
        });
    }

    /// Whether the batch has no operations (expectations alone write
    /// nothing).
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The operations in the order they were added (later ones win).
    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }

    /// The conditions the batch is applied under.
    pub fn expectations(&self) -> &[Expect] {
        &self.expects
    }

    /// Consumes the batch, yielding its operations. Backends use
    /// [`Batch::into_parts`], which keeps the expectations.
    pub fn into_ops(self) -> Vec<BatchOp> {
        self.ops
    }

    /// Consumes the batch, yielding its operations and its expectations.
    pub fn into_parts(self) -> (Vec<BatchOp>, Vec<Expect>) {
        (self.ops, self.expects)
    }

    /// Appends all operations and expectations of `other`.
    pub fn extend(&mut self, other: Batch) {
        self.ops.extend(other.ops);
        self.expects.extend(other.expects);
    }

    /// The first expectation `current` (a key's value now) contradicts.
    pub fn unmet(
        &self,
        mut current: impl FnMut(&[u8]) -> Result<Option<Vec<u8>>, super::StorageError>,
    ) -> Result<Option<&Expect>, super::StorageError> {
        for e in &self.expects {
            if current(&e.key)? != e.value {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }
}
