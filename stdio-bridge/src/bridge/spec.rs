//! How to launch one stdio server: its command line, environment and
//! working directory, resolved from `mcpx.yaml` once per (re)load.
//!
//! The child gets the bridge's environment (so `npx`/`uvx` find PATH and
//! HOME) plus its own `env:`, minus the gateway's secrets: every `MCPX_*`
//! variable, every variable the `auth:` block references, and every variable
//! another server's `env:` references (server A's token is not server B's
//! business). A server's own `env:` entries are always passed.

use crate::error::{Error, Result};
use mcpx_filter::config::{expand_env, Config, ServerConfig, Transport};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

/// Default per-request timeout when `request_timeout` is not set.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Variables that other servers may reference without them becoming secrets:
/// removing PATH from every other child would break `npx` for them.
const SYSTEM_VARS: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TERM", "TMPDIR", "PWD"];

/// Everything needed to start the child. Two equal specs start the same
/// process, so a reload keeps a child whose spec did not change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub command: String,
    pub args: Vec<String>,
    /// The complete environment of the child (nothing else is inherited).
    pub env: BTreeMap<String, String>,
    pub workdir: Option<PathBuf>,
    /// `user:`: the account the child runs as.
    pub user: Option<Account>,
}

/// An account a child runs as, looked up when the config is (re)loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    /// Supplementary groups (from the group database), set before the uid.
    pub groups: Vec<libc::gid_t>,
    pub home: String,
}

/// A stdio server as the bridge runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub name: String,
    pub launch: Spec,
    pub request_timeout: Duration,
}

/// Resolves every stdio server of `config` against `environ` (the bridge's
/// environment). Fails on the first server that cannot be launched, naming
/// the key, so a reload either applies completely or not at all.
pub fn resolve(config: &Config, environ: &BTreeMap<String, String>) -> Result<Vec<ServerSpec>> {
    let stdio: Vec<&ServerConfig> = config.servers.iter().filter(|s| s.transport == Transport::Stdio).collect();
    let mut auth_refs = BTreeSet::new();
    let auth_text = serde_json::to_string(&config.auth).map_err(|e| Error::internal(e.to_string()))?;
    references(&auth_text, &mut auth_refs);
    stdio
        .iter()
        .map(|s| {
            let mut secrets = auth_refs.clone();
            for other in stdio.iter().filter(|o| o.name != s.name) {
                for v in other.env.values() {
                    references(v, &mut secrets);
                }
            }
            secrets.retain(|v| !SYSTEM_VARS.contains(&v.as_str()));
            resolve_one(s, environ, &secrets)
        })
        .collect()
}

fn resolve_one(s: &ServerConfig, environ: &BTreeMap<String, String>, secrets: &BTreeSet<String>) -> Result<ServerSpec> {
    let key = format!("servers.{}", s.name);
    let command =
        s.command.clone().filter(|c| !c.trim().is_empty()).ok_or_else(|| {
            Error::config(format!("{key}.command is required for `transport: stdio`, e.g. command: npx"))
        })?;
    let mut env: BTreeMap<String, String> = environ
        .iter()
        .filter(|(k, _)| !k.starts_with("MCPX_") && !secrets.contains(k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in &s.env {
        let value = expand_env(v, |var| environ.get(var).cloned()).map_err(|e| {
            Error::config(format!("{key}.env.{k}: {e}; export it before starting mcpx, or remove the reference"))
        })?;
        env.insert(k.clone(), value);
    }
    let user = match &s.user {
        Some(u) => {
            let a = account(u).map_err(|e| Error::config(format!("{key}.user: {e}")))?;
            // SAFETY: geteuid(2) cannot fail.
            let euid = unsafe { libc::geteuid() };
            if euid != 0 && euid != a.uid {
                return Err(Error::config(format!(
                    "{key}.user: running the child as {u:?} needs mcpx to run as root (it runs as uid {euid}); \
                     start mcpx as root, or remove `user:`"
                )));
            }
            // Its own HOME and names, so npx/uvx caches land in its home,
            // unless the server's `env:` says otherwise.
            for (k, v) in [("HOME", &a.home), ("USER", &a.name), ("LOGNAME", &a.name)] {
                if !s.env.contains_key(k) {
                    env.insert(k.to_string(), v.clone());
                }
            }
            Some(a)
        }
        None => None,
    };
    let workdir = match &s.workdir {
        Some(w) => {
            let expanded = expand_env(w, |var| environ.get(var).cloned())
                .map_err(|e| Error::config(format!("{key}.workdir: {e}")))?;
            let p = PathBuf::from(expanded);
            if !p.is_dir() {
                return Err(Error::config(format!(
                    "{key}.workdir: {} is not a directory; create it or fix the path",
                    p.display()
                )));
            }
            Some(p)
        }
        None => None,
    };
    let request_timeout =
        s.request_timeout.map(|t| Duration::from_millis(t.as_millis())).unwrap_or(DEFAULT_REQUEST_TIMEOUT);
    Ok(ServerSpec {
        name: s.name.clone(),
        launch: Spec { command, args: s.args.clone(), env, workdir, user },
        request_timeout,
    })
}

/// Looks up an account by name or numeric uid in the system's user database.
fn account(user: &str) -> Result<Account> {
    use std::ffi::{CStr, CString};
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid out-parameter for getpw*_r.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let rc = match user.parse::<libc::uid_t>() {
        // SAFETY: every pointer is valid for the call; buf's length is passed.
        Ok(uid) => unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut found) },
        Err(_) => {
            let c = CString::new(user).map_err(|_| Error::config(format!("{user:?} is not a valid account name")))?;
            // SAFETY: as above; `c` is NUL-terminated.
            unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut found) }
        }
    };
    if rc != 0 || found.is_null() {
        return Err(Error::config(format!(
            "no account {user:?} on this machine (see `getent passwd`); create it or fix the name"
        )));
    }
    // SAFETY: on success the strings point into `buf`, NUL-terminated.
    let (name, home) = unsafe { (CStr::from_ptr(pw.pw_name), CStr::from_ptr(pw.pw_dir)) };
    let (name, home) = (name.to_string_lossy().into_owned(), home.to_string_lossy().into_owned());
    let mut groups = vec![0 as libc::gid_t; 256];
    let mut n = groups.len() as libc::c_int;
    let c = CString::new(name.clone()).map_err(|_| Error::config(format!("{name:?} is not a valid account name")))?;
    // SAFETY: `groups` holds `n` entries; getgrouplist writes at most that many.
    if unsafe { libc::getgrouplist(c.as_ptr(), pw.pw_gid, groups.as_mut_ptr(), &mut n) } < 0 {
        return Err(Error::config(format!("account {name:?} is in more than {} groups", groups.len())));
    }
    groups.truncate(n.max(0) as usize);
    Ok(Account { name, uid: pw.pw_uid, gid: pw.pw_gid, groups, home })
}

/// Collects the names in `${VAR}` references of `s`.
fn references(s: &str, out: &mut BTreeSet<String>) {
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                out.insert(after[..end].to_string());
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
}

/// The bridge's own environment, as a map.
pub fn current_environ() -> BTreeMap<String, String> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpx_filter::config::Mode;

    fn environ() -> BTreeMap<String, String> {
        [
            ("PATH", "/usr/bin"),
            ("HOME", "/root"),
            ("GW_TOKEN", "gw-secret"),
            ("MCPX_ANYTHING", "x"),
            ("GH_TOKEN", "gh-secret"),
            ("DB_PASS", "db-secret"),
            ("HARMLESS", "ok"),
            ("LANG", "C.UTF-8"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    const CONFIG: &str = r#"
servers:
  - name: gh
    transport: stdio
    command: npx
    args: ["-y", "server-github"]
    env: { GITHUB_TOKEN: "${GH_TOKEN}", MODE: "fast-${HARMLESS}", PATH: "${PATH}:/opt" }
    request_timeout: 5s
  - name: db
    transport: stdio
    command: db-server
    env: { PASS: "${DB_PASS}" }
  - name: web
    url: http://127.0.0.1:1/mcp
auth:
  enabled: true
  token: "${GW_TOKEN}"
"#;

    fn specs() -> Vec<ServerSpec> {
        resolve(&Config::from_yaml(CONFIG, Mode::Gateway).unwrap(), &environ()).unwrap()
    }

    #[test]
    fn only_stdio_servers_with_expanded_env() {
        let s = specs();
        assert_eq!(s.len(), 2);
        let gh = &s[0].launch;
        assert_eq!(gh.command, "npx");
        assert_eq!(gh.env["GITHUB_TOKEN"], "gh-secret");
        assert_eq!(gh.env["MODE"], "fast-ok");
        assert_eq!(gh.env["PATH"], "/usr/bin:/opt");
        assert_eq!(gh.env["HOME"], "/root");
        assert_eq!(s[0].request_timeout, Duration::from_secs(5));
        assert_eq!(s[1].request_timeout, DEFAULT_REQUEST_TIMEOUT);
    }

    #[test]
    fn gateway_and_other_servers_secrets_are_withheld() {
        let s = specs();
        for spec in &s {
            let env = &spec.launch.env;
            assert!(!env.contains_key("GW_TOKEN"), "auth secret leaked to {}", spec.name);
            assert!(!env.contains_key("MCPX_ANYTHING"), "MCPX_ variable leaked to {}", spec.name);
            assert!(!env.values().any(|v| v == "gw-secret"));
        }
        // gh may not see db's password and vice versa; PATH stays for both.
        assert!(!s[0].launch.env.contains_key("DB_PASS"));
        assert!(!s[1].launch.env.contains_key("GH_TOKEN"));
        assert_eq!(s[1].launch.env["PATH"], "/usr/bin");
        // Anything another server's env references counts as that server's.
        assert!(!s[1].launch.env.contains_key("HARMLESS"));
        assert_eq!(s[1].launch.env["LANG"], "C.UTF-8");
    }

    #[test]
    fn unset_variable_is_a_clear_error() {
        let mut env = environ();
        env.remove("GH_TOKEN");
        let e = resolve(&Config::from_yaml(CONFIG, Mode::Gateway).unwrap(), &env).unwrap_err();
        assert_eq!(e.kind(), crate::error::Kind::Config);
        let e = e.to_string();
        assert!(e.contains("servers.gh.env.GITHUB_TOKEN") && e.contains("GH_TOKEN is not set"), "{e}");
    }

    #[test]
    fn missing_workdir_is_an_error() {
        let text = "servers:\n  - name: a\n    transport: stdio\n    command: x\n    workdir: /nonexistent/dir\n";
        let e = resolve(&Config::from_yaml(text, Mode::Gateway).unwrap(), &environ()).unwrap_err().to_string();
        assert!(e.contains("servers.a.workdir"), "{e}");
    }

    #[test]
    fn user_is_looked_up_and_gets_its_own_home() {
        let text = "servers:\n  - name: a\n    transport: stdio\n    command: x\n    user: root\n";
        let s = resolve(&Config::from_yaml(text, Mode::Gateway).unwrap(), &environ()).unwrap();
        let a = s[0].launch.user.as_ref().unwrap();
        assert_eq!((a.uid, a.gid, a.name.as_str()), (0, 0, "root"));
        assert_eq!(s[0].launch.env["USER"], "root");
        assert_eq!(s[0].launch.env["HOME"], a.home);
        let by_uid = text.replace("user: root", "user: \"0\"");
        let s = resolve(&Config::from_yaml(&by_uid, Mode::Gateway).unwrap(), &environ()).unwrap();
        assert_eq!(s[0].launch.user.as_ref().unwrap().name, "root");
        let bad = text.replace("user: root", "user: no-such-account-here");
        let e = resolve(&Config::from_yaml(&bad, Mode::Gateway).unwrap(), &environ()).unwrap_err().to_string();
        assert!(e.contains("servers.a.user") && e.contains("no account"), "{e}");
        let http = "servers:\n  - name: a\n    url: http://h:1/mcp\n    user: root\n";
        assert!(Config::from_yaml(http, Mode::Gateway).unwrap_err().to_string().contains("user"));
    }

    #[test]
    fn equal_configs_give_equal_specs() {
        assert_eq!(specs(), specs());
        let changed = CONFIG.replace("server-github", "server-github@2");
        let other = resolve(&Config::from_yaml(&changed, Mode::Gateway).unwrap(), &environ()).unwrap();
        assert_ne!(other[0].launch, specs()[0].launch);
        assert_eq!(other[1], specs()[1]);
    }
}
