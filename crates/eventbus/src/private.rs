//! Files that only the service's own user may read: the logs and stores hold personal data.
//! Every store and outbox of the workspace creates its directory and files through these.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` and its missing parents, and makes `dir` itself `0700`, also if it was there.
pub fn dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Makes `file` `0600`. SQLite gives its `-wal` and `-shm` files the mode of the database file.
pub fn file(file: &Path) -> io::Result<()> {
    fs::set_permissions(file, fs::Permissions::from_mode(0o600))
}
