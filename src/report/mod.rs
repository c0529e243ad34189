//! Files people and machines read: tables, CSV. Every file is written atomically.

use std::io::{BufWriter, Write};
use std::path::Path;

/// Writes `path` through a temporary file in the same folder, renamed into place only when
/// `write` succeeded, so readers never see a half-written file and an old one survives a
/// failure.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    let mut out = BufWriter::new(tmp);
    write(&mut out)?;
    let tmp = out.into_inner().map_err(|e| e.into_error())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
