//! Writing files so that nothing is ever lost: a save either fully replaces the old file or leaves
//! it untouched.
//!
//! [`atomic_write`] writes to a temporary file in the same directory, flushes it to disk, and only
//! then renames it over the destination. A rename within one file system is atomic on POSIX
//! systems, so a reader that opens the path sees either the complete old file or the complete new
//! one, never a prefix; and a write that fails part-way (a full disk, a killed process) leaves the
//! old checkpoint exactly as it was. Every checkpoint tapegrad writes goes through here.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` atomically (see the module docs). `op` names the caller in errors.
pub(crate) fn atomic_write(op: &'static str, path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source: std::io::Error, at: &Path| Error::Io {
        op,
        path: at.display().to_string(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io(std::io::ErrorKind::InvalidInput.into(), path))?;
    // Unique per process and call, so concurrent saves never share a temporary file.
    let temp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        NEXT_TEMP.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)
    })();
    if let Err(source) = written {
        // The destination was never touched; only the temporary file can be left behind.
        let _ = fs::remove_file(&temp);
        return Err(io(source, path));
    }
    // Make the rename itself durable: sync the directory entry (not possible on every platform,
    // and not needed for atomicity, so a failure here is ignored).
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("tapegrad-io-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.bin");
        atomic_write("test", &path, b"old").unwrap();
        atomic_write("test", &path, b"new contents").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new contents");
        let leftovers = fs::read_dir(&dir).unwrap().count();
        assert_eq!(leftovers, 1, "only the destination remains");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = std::env::temp_dir().join(format!("tapegrad-io-fail-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ckpt");
        atomic_write("test", &path, b"old").unwrap();
        // A directory in the way of the rename: the write succeeds, the rename fails.
        let blocked = dir.join("blocked");
        fs::create_dir_all(blocked.join("inside")).unwrap();
        assert!(atomic_write("test", &blocked, b"x").is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert!(
            fs::read_dir(&dir).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp-"))
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
