//! Files people and machines read: tables, CSV, HTML. Every file is written atomically.

pub mod history;

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
    let tmp = temp_file_in(dir, "")?;
    let mut out = BufWriter::new(tmp);
    write(&mut out)?;
    let tmp = out.into_inner().map_err(|e| e.into_error())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A temporary file in `dir` ending in `suffix`, readable by others once renamed (0644 on
/// Unix, like a file created normally) rather than tempfile's private 0600.
pub fn temp_file_in(dir: &Path, suffix: &str) -> std::io::Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".mrgan-").suffix(suffix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    builder.tempfile_in(dir)
}
