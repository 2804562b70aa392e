//! The files `mcpx run` makes on this machine, each private to this user:
//! the operator control socket (in a directory only we can enter) and the
//! work directory for Envoy's files (they hold secrets), and their removal
//! on the way out.

use crate::error::{Error, Kind, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The operator control socket's default place: a directory only this user
/// can enter, found again by `mcpx baseline` without being told.
pub fn default_control() -> PathBuf {
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(d) if d.is_absolute() => d.join("mcpx"),
        // SAFETY: geteuid(2) cannot fail.
        _ => std::env::temp_dir().join(format!("mcpx-{}", unsafe { libc::geteuid() })),
    };
    dir.join("control.sock")
}

/// What `mcpx run` created and removes when it exits, whichever way.
/// Left behind only when mcpx is killed with SIGKILL (Envoy then dies too).
#[derive(Default)]
pub struct Cleanup {
    pub workdir: Option<PathBuf>,
    pub socket: Option<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(d) = &self.workdir {
            let _ = std::fs::remove_dir_all(d);
        }
        if let Some(s) = &self.socket {
            use std::os::unix::fs::FileTypeExt;
            if std::fs::symlink_metadata(s).is_ok_and(|m| m.file_type().is_socket()) {
                let _ = std::fs::remove_file(s);
            }
        }
    }
}

/// The control socket: `--control`, made absolute (Envoy needs that), or the default.
pub fn control_path(explicit: &Option<PathBuf>) -> Result<PathBuf> {
    match explicit {
        Some(p) if p.to_str().is_some_and(|t| t.parse::<SocketAddr>().is_ok()) => Err(Error::usage(format!(
            "--control {}: the control listener is a Unix socket now, not a TCP port (any local process can \
             reach a loopback port); pass a socket path such as /run/mcpx/control.sock, or leave --control out",
            p.display()
        ))),
        Some(p) if p.is_relative() => Ok(std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.clone())),
        Some(p) => Ok(p.clone()),
        None => Ok(default_control()),
    }
}

/// The control socket's directory must be one only we can enter (mode
/// 0700, ours): Envoy creates the socket there and then sets its mode, and
/// nobody else may reach it in between or swap it for their own. A socket
/// file left by a gateway that was killed is removed; one that still
/// answers belongs to a running gateway and is refused by the preflight.
pub fn prepare_control_socket(socket: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
    let dir = socket.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let fix = "make it a directory only you can use (chmod 700), or pass --control PATH in one";
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io("create the control socket directory", dir, e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| Error::io("look at", dir, e))?;
    // SAFETY: geteuid(2) cannot fail.
    let uid = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(Error::new(Kind::Io, format!(
            "the control socket directory {} is not private (owner uid {}, mode {:o}; needed: uid {uid}, mode 700): {fix}",
            dir.display(),
            meta.uid(),
            meta.mode() & 0o7777
        ))
        .in_file(dir));
    }
    match std::fs::symlink_metadata(socket) {
        Err(_) => Ok(()),
        Ok(m) if !m.file_type().is_socket() => Err(Error::io_other(format!(
            "the control socket path {} exists and is not a socket; remove it or pass --control PATH",
            socket.display()
        ))
        .in_file(socket)),
        Ok(_) if std::os::unix::net::UnixStream::connect(socket).is_ok() => Ok(()),
        Ok(_) => std::fs::remove_file(socket).map_err(|e| Error::io("remove the stale socket", socket, e)),
    }
}

/// A new directory only we can use, for the files Envoy reads (they hold
/// secrets): never one that already exists (made by someone else, or left
/// by an earlier run with the same pid, as in a restarted container).
pub fn fresh_private_dir() -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    let pid = std::process::id();
    let mut last = String::new();
    for n in 0..1000 {
        let d = if n == 0 { base.join(format!("mcpx-{pid}")) } else { base.join(format!("mcpx-{pid}-{n}")) };
        match std::fs::DirBuilder::new().mode(0o700).create(&d) {
            Ok(()) => return Ok(d),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = d.display().to_string(),
            Err(e) => return Err(Error::io("create", &d, e).with_hint("; pass --workdir DIR")),
        }
    }
    Err(Error::io_other(format!(
        "cannot create a fresh directory in {} (last tried {last}); pass --workdir DIR",
        base.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_takes_a_socket_path_not_a_port() {
        let e = control_path(&Some("127.0.0.1:9902".into())).unwrap_err();
        assert_eq!(e.kind(), Kind::Usage);
        assert!(e.to_string().contains("Unix socket"), "{e}");
        assert!(control_path(&Some("ctl.sock".into())).unwrap().is_absolute());
        assert!(control_path(&None).unwrap().ends_with("control.sock"));
    }

    #[test]
    fn the_control_directory_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("mcpx-control-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let socket = d.join("control.sock");
        prepare_control_socket(&socket).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = prepare_control_socket(&socket).unwrap_err();
        assert_eq!((e.kind(), e.path()), (Kind::Io, Some(d.as_path())));
        let e = e.to_string();
        assert!(e.contains("not private") && e.contains("--control"), "{e}");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        // A socket nobody answers on (left by a killed gateway) is removed.
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        prepare_control_socket(&socket).unwrap();
        assert!(!socket.exists());
        // A file that is not a socket is not touched.
        std::fs::write(&socket, "x").unwrap();
        assert!(prepare_control_socket(&socket).unwrap_err().to_string().contains("not a socket"));
        std::fs::remove_dir_all(d).ok();
    }
}
