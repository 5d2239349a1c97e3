//! Owner-only permissions for a data directory: the relay's holds the
//! signing secret, every customer's case and the revocations; a device's
//! holds its token and its store's cases.
//!
//! sled creates its files with the process umask, so after opening the
//! database the relay and the device walk the directory once and tighten
//! everything: directories 0700, files 0600. Files sled creates later sit
//! inside a 0700 directory, so nobody else can reach them either. Beside
//! [`super::SledStorage`] because both binaries open one (the rest of this
//! crate does no IO).

use std::path::Path;

/// Makes `dir` 0700 (Unix; a no-op elsewhere).
pub fn restrict_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Makes `dir` and every directory below it 0700 and every file 0600.
/// Symbolic links are left alone (never followed), so a link planted in the
/// directory cannot make us change permissions elsewhere.
pub fn restrict_tree(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::symlink_metadata(dir)?;
        if !meta.is_dir() {
            return Ok(());
        }
        restrict_dir(dir)?;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let ty = entry.file_type()?;
            if ty.is_dir() {
                restrict_tree(&entry.path())?;
            } else if ty.is_file() {
                std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
