//! Blobs as files: the relay's evidence store.
//!
//! Layout under the root: `partial/<hex>` for unfinished uploads (appended
//! in place; a resumed upload continues at the file's length) and
//! `complete/<first two hex>/<hex>` for checked blobs. A blob becomes
//! complete by a rename after its bytes were hashed and synced, and the
//! rename is synced too, so after any crash a complete file is a whole,
//! correct blob; a partial file may be shorter than what was appended (the
//! resume point is its length on disk) and a partial whose tail was
//! damaged fails its hash at sealing and starts over.

use super::{BlobError, BlobHash, BlobStore, Held};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Locks striped by the hash's first byte: appends and seals of one blob
/// are serialized, different blobs mostly proceed in parallel.
const STRIPES: usize = 32;

/// A directory of blob files.
pub struct DirBlobs {
    root: PathBuf,
    stripes: Vec<Mutex<()>>,
}

fn io(op: &'static str) -> impl Fn(std::io::Error) -> BlobError {
    move |e| BlobError::Io {
        op,
        message: e.to_string(),
    }
}

/// Creates `dir` (and parents) readable by the relay's user only: evidence
/// shows customers' homes and goods.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Options for a blob file, readable by the relay's user only.
fn private_file() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

/// Syncs a directory so a rename or a new entry in it survives a crash.
fn sync_dir(dir: &Path) -> Result<(), BlobError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync directory"))
}

impl DirBlobs {
    /// Opens (or creates) the store under `root`.
    pub fn open(root: &Path) -> Result<DirBlobs, BlobError> {
        create_private_dir(&root.join("partial")).map_err(io("create"))?;
        create_private_dir(&root.join("complete")).map_err(io("create"))?;
        crate::storage::perms::restrict_tree(root).map_err(io("restrict"))?;
        Ok(DirBlobs {
            root: root.to_path_buf(),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        })
    }

    /// The file of the complete blob `hash` (it may not exist). The HTTP
    /// API serves it directly, with ranges.
    pub fn complete_path(&self, hash: &BlobHash) -> PathBuf {
        let hex = super::hex(hash);
        self.root.join("complete").join(&hex[..2]).join(hex)
    }

    fn partial_path(&self, hash: &BlobHash) -> PathBuf {
        self.root.join("partial").join(super::hex(hash))
    }

    fn lock(&self, hash: &BlobHash) -> std::sync::MutexGuard<'_, ()> {
        // The guard protects no data, only ordering, so a poisoned lock is
        // as good as a clean one.
        self.stripes[usize::from(hash[0]) % STRIPES]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Total bytes of complete blobs (walks the directory).
    pub fn complete_bytes(&self) -> Result<u64, BlobError> {
        let mut total = 0;
        for sub in fs::read_dir(self.root.join("complete")).map_err(io("list"))? {
            let sub = sub.map_err(io("list"))?;
            if !sub.path().is_dir() {
                continue;
            }
            for f in fs::read_dir(sub.path()).map_err(io("list"))? {
                total += f.map_err(io("list"))?.metadata().map_err(io("list"))?.len();
            }
        }
        Ok(total)
    }
}

fn len_of(path: &Path) -> Result<Option<u64>, BlobError> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("stat")(e)),
    }
}

impl BlobStore for DirBlobs {
    fn held(&self, hash: &BlobHash) -> Result<Held, BlobError> {
        if let Some(n) = len_of(&self.complete_path(hash))? {
            return Ok(Held::Complete(n));
        }
        Ok(match len_of(&self.partial_path(hash))? {
            Some(n) => Held::Partial(n),
            None => Held::Nothing,
        })
    }

    fn append(&self, hash: &BlobHash, offset: u64, bytes: &[u8]) -> Result<u64, BlobError> {
        let _g = self.lock(hash);
        if let Some(n) = len_of(&self.complete_path(hash))? {
            return Err(BlobError::Offset { offset, held: n });
        }
        let path = self.partial_path(hash);
        let mut f = private_file()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io("open partial"))?;
        let held = f.metadata().map_err(io("stat"))?.len();
        if held != offset {
            return Err(BlobError::Offset { offset, held });
        }
        f.write_all(bytes).map_err(io("append"))?;
        Ok(held + bytes.len() as u64)
    }

    fn seal(&self, hash: &BlobHash, size: u64) -> Result<(), BlobError> {
        let _g = self.lock(hash);
        let done = self.complete_path(hash);
        if len_of(&done)?.is_some() {
            return Ok(());
        }
        let path = self.partial_path(hash);
        let mismatch = |why: String| -> Result<(), BlobError> {
            let _ = fs::remove_file(&path);
            Err(BlobError::Mismatch(why))
        };
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return mismatch(format!("0 bytes received, {size} expected"))
            }
            Err(e) => return Err(io("open partial")(e)),
        };
        let len = f.metadata().map_err(io("stat"))?.len();
        if len != size {
            return mismatch(format!("{len} bytes received, {size} expected"));
        }
        f.sync_all().map_err(io("sync"))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(io("read partial"))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let got: [u8; 32] = h.finalize().into();
        if got != *hash {
            return mismatch("SHA-256 differs from the name".into());
        }
        let parent = done.parent().unwrap_or(&self.root).to_path_buf();
        let fresh_dir = !parent.exists();
        create_private_dir(&parent).map_err(io("create"))?;
        fs::rename(&path, &done).map_err(io("rename"))?;
        sync_dir(&parent)?;
        sync_dir(&self.root.join("partial"))?;
        if fresh_dir {
            sync_dir(&self.root.join("complete"))?;
        }
        Ok(())
    }

    fn discard_partial(&self, hash: &BlobHash) -> Result<(), BlobError> {
        let _g = self.lock(hash);
        match fs::remove_file(self.partial_path(hash)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove partial")(e)),
            _ => Ok(()),
        }
    }

    fn read(&self, hash: &BlobHash, offset: u64, len: usize) -> Result<Vec<u8>, BlobError> {
        let mut f = match File::open(self.complete_path(hash)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BlobError::Missing),
            Err(e) => return Err(io("open")(e)),
        };
        let size = f.metadata().map_err(io("stat"))?.len();
        if offset > size {
            return Err(BlobError::Missing);
        }
        f.seek(SeekFrom::Start(offset)).map_err(io("seek"))?;
        let want = (size - offset).min(len as u64) as usize;
        let mut out = vec![0u8; want];
        f.read_exact(&mut out).map_err(io("read"))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        super::super::contract::check(&DirBlobs::open(dir.path()).unwrap());
    }

    #[test]
    fn a_reopened_store_resumes_partials_and_keeps_complete_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![7u8; 5000];
        let h = super::super::hash_of(&data);
        {
            let s = DirBlobs::open(dir.path()).unwrap();
            s.append(&h, 0, &data[..3000]).unwrap();
        }
        let s = DirBlobs::open(dir.path()).unwrap();
        assert_eq!(s.held(&h).unwrap(), Held::Partial(3000));
        s.append(&h, 3000, &data[3000..]).unwrap();
        s.seal(&h, 5000).unwrap();
        drop(s);
        let s = DirBlobs::open(dir.path()).unwrap();
        assert_eq!(s.held(&h).unwrap(), Held::Complete(5000));
        assert_eq!(s.complete_bytes().unwrap(), 5000);
        assert!(s.complete_path(&h).exists());
    }
}
