//! Replacing a whole file so readers see the old or the new content, never a part.

use std::io::{self, Write};
use std::path::Path;

/// Writes `data` to `path` through a synced temp file in the same directory and a rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut t = tempfile::NamedTempFile::new_in(dir)?;
    t.write_all(data)?;
    t.as_file().sync_all()?;
    t.persist(path).map_err(|e| e.error)?;
    Ok(())
}
