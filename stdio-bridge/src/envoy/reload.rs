//! Hot reload for `mcpx run` (docs/reload-and-health.md): SIGHUP or `--watch` re-reads
//! mcpx.yaml. A valid config is rendered and handed to Envoy through its
//! dynamic resource files (see `dynamic`); an invalid one is refused with the
//! reason on stderr and the running config stays. Each attempt is an audit
//! event: one JSON line `{"event":"reload","result":"applied"|"rejected",…}`.
//!
//! The steps, in order: read → validate (the same checks as `mcpx check`,
//! plus what the filter itself accepts) → render → stage: each changed file
//! (clusters, routes, listener) is written and confirmed from Envoy's stats
//! one at a time → the stdio bridge → the filter policy (ECDS), last.
//!
//! All or nothing: when Envoy refuses a part (a listener whose port is taken,
//! say) or the bridge refuses the config, every part already applied is put
//! back, so the running configuration is exactly the previous one. The policy
//! goes last so that a looser policy can never be in force for a config that
//! is then rejected.

use crate::envoy::dynamic::{self, Kind, Layout, Split};
use crate::envoy::launch::http_get;
use crate::envoy::render;
use crate::error::{Error, Result};
use mcpx_filter::config::{AuditConfig, Config, Mode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Renders a validated config into the complete static bootstrap (what
/// `mcpx render` prints, plus whatever `run` adds to it), or refuses it for
/// reasons only `run` knows. The same function serves the start and every
/// reload, so a reload can never render differently from a fresh start.
pub type Render = Box<dyn Fn(&Config) -> Result<Value> + Send>;

/// The stdio bridge's step (see [`Reloader::bridge`]): applies a config and
/// says what it changed; an error rejects the reload. Applying the previous
/// config undoes it.
pub type Hook = Box<dyn FnMut(&Config) -> Result<Value> + Send>;

/// What asked for a reload.
#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    Signal,
    Watch,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "sighup",
            Trigger::Watch => "watch",
        }
    }
}

pub struct Reloader {
    path: PathBuf,
    render: Render,
    hooks: Vec<Hook>,
    layout: Layout,
    admin: SocketAddr,
    /// The config Envoy runs (its audit settings say where events go).
    config: Config,
    /// What is on disk for Envoy, to write only what changed.
    written: Split,
    /// The file content last acted on (applied or rejected), for `--watch`:
    /// mcpx.yaml followed by the lock it names, so a changed lock reloads too.
    seen: Vec<u8>,
    /// The lock file (`inspection.lock`) of the config last acted on.
    lock: Option<PathBuf>,
    /// `--watch`: content that differed from `seen` at the previous poll;
    /// acted on once it is the same on two polls (a half-written file is not).
    settling: Option<Vec<u8>>,
}

impl Reloader {
    /// Renders the first config and writes all dynamic files. Envoy then
    /// starts from [`Reloader::bootstrap`].
    pub fn start(
        path: PathBuf,
        text: Vec<u8>,
        config: Config,
        render: Render,
        layout: Layout,
        admin: SocketAddr,
    ) -> Result<Self> {
        let written = dynamic::split(render(&config)?, &layout)?;
        for kind in Kind::ALL {
            write(&layout, kind, written.file(kind))?;
        }
        let lock = lock_named(&path, &text).flatten();
        let seen = watched(text, lock.as_deref()).unwrap_or_default();
        Ok(Self { path, render, hooks: Vec::new(), layout, admin, config, written, seen, lock, settling: None })
    }

    /// The stdio bridge's `apply`: run once Envoy has accepted the new
    /// clusters, routes and listener, before the new policy; run again with
    /// the previous config if the policy is then refused.
    pub fn bridge(&mut self, hook: Hook) {
        self.hooks.push(hook);
    }

    pub fn bootstrap(&self) -> &Value {
        &self.written.bootstrap
    }

    /// `--watch`: whether the file changed since it was last acted on, and
    /// has stopped changing.
    pub fn file_changed(&mut self) -> bool {
        let Some(now) = std::fs::read(&self.path).ok().and_then(|t| watched(t, self.lock.as_deref())) else {
            // Editors replace files; a missing file is a moment, not a config.
            return false;
        };
        if now == self.seen {
            self.settling = None;
            return false;
        }
        if self.settling.as_ref() == Some(&now) {
            return true;
        }
        self.settling = Some(now);
        false
    }

    /// Re-reads the file and applies it, or refuses it. Never fails: the
    /// outcome is reported (stderr and the audit output).
    pub async fn reload(&mut self, trigger: Trigger) {
        let started = Instant::now();
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) => return self.rejected(trigger, &Error::io("read", &self.path, e)),
        };
        if let Some(lock) = lock_named(&self.path, &text) {
            self.lock = lock;
        }
        self.seen = watched(text.clone(), self.lock.as_deref()).unwrap_or_else(|| text.clone());
        self.settling = None;
        let config = match self.validate(&text) {
            Ok(c) => c,
            Err(e) => return self.rejected(trigger, &e),
        };
        let next = match (self.render)(&config).and_then(|b| dynamic::split(b, &self.layout)) {
            Ok(s) => s,
            Err(e) => return self.rejected(trigger, &e.context("rendering the Envoy configuration")),
        };

        let changed: Vec<Kind> = Kind::ALL.into_iter().filter(|k| next.file(*k) != self.written.file(*k)).collect();
        // Admin, stats and other bootstrap-level settings are fixed while Envoy runs.
        let restart_needed = next.bootstrap != self.written.bootstrap;
        let mut event = json!({
            "event": "reload",
            "trigger": trigger.as_str(),
            "config": self.path.display().to_string(),
            "changed": changed.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        });

        // Stage: Envoy's parts in order, each confirmed before the next.
        let mut applied: Vec<Kind> = Vec::new();
        let mut failure: Option<Error> = None;
        for kind in STAGES.iter().filter(|k| changed.contains(k)) {
            match self.put(*kind, next.file(*kind)).await {
                Ok(()) => applied.push(*kind),
                Err(msg) => {
                    failure = Some(msg);
                    break;
                }
            }
        }
        // The stdio bridge, once Envoy has taken the rest.
        let mut bridged = 0;
        if failure.is_none() {
            let mut report = serde_json::Map::new();
            for hook in &mut self.hooks {
                match hook(&config) {
                    Ok(v) => {
                        bridged += 1;
                        if let Value::Object(o) = v {
                            report.extend(o);
                        }
                    }
                    Err(e) => {
                        failure = Some(e.context("applying it to the stdio bridge"));
                        break;
                    }
                }
            }
            if !report.is_empty() {
                event["stdio"] = Value::Object(report);
            }
        }
        // The policy last.
        if failure.is_none() && changed.contains(&Kind::Filter) {
            match self.put(Kind::Filter, next.file(Kind::Filter)).await {
                Ok(()) => applied.push(Kind::Filter),
                Err(msg) => failure = Some(msg),
            }
        }
        event["duration_ms"] = json!(started.elapsed().as_millis() as u64);

        let Some(failure) = failure else {
            self.written = next;
            event["result"] = json!("applied");
            event["applied"] = json!(applied.iter().map(|k| k.as_str()).collect::<Vec<_>>());
            if restart_needed {
                event["restart_required"] = json!(true);
                eprintln!(
                    "mcpx: reload applied, but some settings (admin, stats or tracing) take effect only after a restart"
                );
            }
            self.config = config;
            eprintln!("mcpx: reloaded {} ({})", self.path.display(), describe(&changed));
            return audit_event(&self.config, event);
        };

        // Roll back: the bridge, then Envoy's parts in reverse order. Every
        // changed file is rewritten with its previous content (Envoy kept its
        // previous version of a refused one; the file on disk follows).
        let mut unrestored: Vec<String> = Vec::new();
        let old = self.config.clone();
        for hook in self.hooks.iter_mut().take(bridged) {
            if let Err(e) = hook(&old) {
                unrestored.push(format!("stdio bridge ({e})"));
            }
        }
        for kind in changed.iter().rev() {
            let previous = self.written.file(*kind).clone();
            if applied.contains(kind) {
                if let Err(e) = self.put(*kind, &previous).await {
                    unrestored.push(format!("{} ({e})", kind.as_str()));
                }
            } else if let Err(e) = write(&self.layout, *kind, &previous) {
                unrestored.push(format!("{} ({e})", kind.as_str()));
            }
        }
        let mut msg = format!("{failure}; nothing was applied, the previous configuration stays");
        if !unrestored.is_empty() {
            // Not expected (Envoy took these very files before); say so loudly.
            msg = format!("{msg}, except that these could not be put back: {}", unrestored.join(", "));
            event["not_restored"] = json!(unrestored);
        }
        eprintln!("mcpx: reload of {} rejected: {msg}", self.path.display());
        event["result"] = json!("rejected");
        event["error"] = json!(msg);
        event["applied"] = json!([]);
        event["rolled_back"] = json!(applied.iter().map(|k| k.as_str()).collect::<Vec<_>>());
        audit_event(&self.config, event);
    }

    /// Writes one of Envoy's files and waits until Envoy has taken it.
    async fn put(&self, kind: Kind, value: &Value) -> Result<()> {
        let before = self.counters().await;
        write(&self.layout, kind, value)?;
        if self.confirm(kind, &before).await {
            Ok(())
        } else {
            Err(Error::envoy(format!(
                "Envoy refused the new {} configuration and keeps the previous one; Envoy's log above says why",
                kind.as_str()
            )))
        }
    }

    fn validate(&self, text: &[u8]) -> Result<Config> {
        let at = |e: Error| e.in_file(&self.path);
        let text = std::str::from_utf8(text).map_err(|_| Error::config_in(&self.path, "is not UTF-8 text"))?;
        let mut config = Config::from_yaml(text, Mode::Gateway).map_err(|e| Error::config_in(&self.path, e))?;
        // The lock travels in the plugin configuration (docs/integrity.md).
        crate::operator::lockfile::embed(&self.path, &mut config).map_err(at)?;
        // The filter must accept what it will be given, or Envoy would refuse it.
        let plugin = render::plugin_configuration(&config).map_err(at)?;
        mcpx_filter::gateway::Gateway::from_plugin_config(&plugin).map_err(|e| Error::config_in(&self.path, e))?;
        Ok(config)
    }

    fn rejected(&mut self, trigger: Trigger, e: &Error) {
        let msg = e.to_string();
        eprintln!("mcpx: reload rejected, the running configuration is unchanged: {msg}");
        let event = json!({
            "event": "reload",
            "trigger": trigger.as_str(),
            "config": self.path.display().to_string(),
            "result": "rejected",
            "error": msg,
            "applied": [],
        });
        audit_event(&self.config, event);
    }

    /// Envoy's update counters for the dynamic resources.
    async fn counters(&self) -> BTreeMap<String, u64> {
        let path =
            "/stats?filter=%28update_success%7Cupdate_rejected%7Cupdate_failure%7Cconfig_reload%7Cconfig_fail%29";
        let Some((200, body)) = http_get(self.admin, path).await else {
            return BTreeMap::new();
        };
        body.lines()
            .filter_map(|l| l.split_once(": "))
            .filter_map(|(k, v)| Some((k.trim().to_string(), v.trim().parse().ok()?)))
            .collect()
    }

    /// Waits (bounded) until Envoy has taken or refused a written file:
    /// true when taken (or not refused within 5 s: Envoy may still be warming it).
    async fn confirm(&self, kind: Kind, before: &BTreeMap<String, u64>) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        let (ok, bad) = stat_names(kind);
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = self.counters().await;
            let grew = |name: &str| total(&now, name) > total(before, name);
            if bad.iter().any(|b| grew(b)) {
                return false;
            }
            if grew(&ok) {
                return true;
            }
        }
        true
    }
}

/// The order Envoy's parts are staged in: clusters first, so new routes
/// find them; the filter (the policy) is not here: it goes last, after the
/// stdio bridge.
const STAGES: [Kind; 3] = [Kind::Clusters, Kind::Routes, Kind::Listener];

/// The sum of the counters whose names end with `suffix`.
fn total(counters: &BTreeMap<String, u64>, suffix: &str) -> u64 {
    counters.iter().filter(|(k, _)| k.ends_with(suffix)).map(|(_, v)| v).sum()
}

/// The counters that move when Envoy takes / refuses a file.
fn stat_names(kind: Kind) -> (String, [String; 2]) {
    match kind {
        Kind::Listener => (
            "listener_manager.lds.update_success".into(),
            ["listener_manager.lds.update_rejected".into(), "listener_manager.lds.update_failure".into()],
        ),
        // `http.<stat_prefix>.rds.<route config>.*`, matched by suffix.
        Kind::Routes => {
            (".rds.mcpx.update_success".into(), [".rds.mcpx.update_rejected".into(), ".rds.mcpx.update_failure".into()])
        }
        Kind::Clusters => (
            "cluster_manager.cds.update_success".into(),
            ["cluster_manager.cds.update_rejected".into(), "cluster_manager.cds.update_failure".into()],
        ),
        Kind::Filter => {
            let p = format!("extension_config_discovery.http_filter.{}", dynamic::FILTER_NAME);
            (format!("{p}.config_reload"), [format!("{p}.config_fail"), format!("{p}.update_rejected")])
        }
    }
}

fn describe(changed: &[Kind]) -> String {
    if changed.is_empty() {
        return "no change for Envoy".into();
    }
    let names: Vec<&str> = changed.iter().map(|k| k.as_str()).collect();
    format!("changed: {}", names.join(", "))
}

fn write(layout: &Layout, kind: Kind, value: &Value) -> Result<()> {
    let data = serde_json::to_vec_pretty(value).map_err(|e| Error::internal(e.to_string()))?;
    dynamic::write_atomically(&layout.file_of(kind), &data)
}

/// Writes a reload event to the audit output (reloads are audit events),
/// or to stderr when audit is off, so a reload always leaves a trace.
pub fn audit_event(config: &Config, event: Value) {
    let stderr = AuditConfig { enabled: true, output: "stderr".into() };
    let audit = if config.audit.enabled { &config.audit } else { &stderr };
    if let Err(e) = crate::envoy::audit::event(audit, "reload", event.clone()) {
        eprintln!("mcpx: {e}; the event was: {event}");
    }
}

/// The lock file a config text names (`inspection.lock`); `None` when the
/// text does not parse (then the previous answer stands).
fn lock_named(config_path: &std::path::Path, text: &[u8]) -> Option<Option<PathBuf>> {
    let config = Config::from_yaml(std::str::from_utf8(text).ok()?, Mode::Gateway).ok()?;
    Some(config.inspection.lock.as_deref().map(|l| crate::operator::lockfile::lock_path(config_path, l)))
}

/// What `--watch` compares: the config text, then the lock's (None while
/// the lock is missing: it is being replaced).
fn watched(mut text: Vec<u8>, lock: Option<&std::path::Path>) -> Option<Vec<u8>> {
    if let Some(l) = lock {
        text.extend_from_slice(b"\0mcpx.lock\0");
        text.extend(std::fs::read(l).ok()?);
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "servers:\n  - name: demo\n    url: http://127.0.0.1:3001\n";

    fn reloader(dir: &std::path::Path) -> Reloader {
        let path = dir.join("mcpx.yaml");
        std::fs::write(&path, GOOD).unwrap();
        let config = Config::from_yaml(GOOD, Mode::Gateway).unwrap();
        let render: Render = Box::new(|c| {
            let opts = render::RenderOptions {
                listen: ("127.0.0.1".into(), 8080),
                admin: "127.0.0.1:9901".parse().unwrap(),
                wasm_path: "/x.wasm".into(),
                control: None,
                bridge: None,
            };
            render::bootstrap(c, &opts)
        });
        let layout = Layout { dir: dir.join("dynamic") };
        Reloader::start(path, GOOD.into(), config, render, layout, "127.0.0.1:9".parse().unwrap()).unwrap()
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mcpx-reload-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn start_writes_every_file() {
        let d = tempdir("start");
        let r = reloader(&d);
        for kind in Kind::ALL {
            let v: Value = serde_json::from_slice(&std::fs::read(r.layout.file_of(kind)).unwrap()).unwrap();
            assert!(v["resources"].as_array().is_some_and(|a| !a.is_empty()), "{kind:?}");
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(r.layout.file_of(Kind::Filter)).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "readable by others");
        std::fs::remove_dir_all(d).ok();
    }

    #[test]
    fn watch_waits_for_the_file_to_settle() {
        let d = tempdir("watch");
        let mut r = reloader(&d);
        assert!(!r.file_changed(), "unchanged");
        std::fs::write(d.join("mcpx.yaml"), "servers:\n  - na").unwrap();
        assert!(!r.file_changed(), "first sight of a change");
        std::fs::write(d.join("mcpx.yaml"), format!("{GOOD}    policy: {{ deny_tools: [echo] }}\n")).unwrap();
        assert!(!r.file_changed(), "still changing");
        assert!(r.file_changed(), "settled");
        std::fs::remove_file(d.join("mcpx.yaml")).unwrap();
        assert!(!r.file_changed(), "a missing file is not a config");
        std::fs::remove_dir_all(d).ok();
    }

    #[tokio::test]
    async fn a_failing_hook_rejects_the_reload_and_envoy_files_stay() {
        let d = tempdir("hook");
        let mut r = reloader(&d);
        let before = std::fs::read(r.layout.file_of(Kind::Filter)).unwrap();
        r.bridge(Box::new(|c: &Config| {
            if c.servers[0].policy.deny_tools.is_empty() {
                Ok(Value::Null)
            } else {
                Err(Error::config("the bridge cannot apply it"))
            }
        }));
        std::fs::write(d.join("mcpx.yaml"), format!("{GOOD}    policy: {{ deny_tools: [echo] }}\n")).unwrap();
        r.reload(Trigger::Signal).await;
        assert_eq!(std::fs::read(r.layout.file_of(Kind::Filter)).unwrap(), before);
        assert!(r.config.servers[0].policy.deny_tools.is_empty(), "the old config stays");
        std::fs::remove_dir_all(d).ok();
    }

    #[test]
    fn validation_includes_what_the_filter_accepts() {
        let d = tempdir("validate");
        let r = reloader(&d);
        assert!(r.validate(GOOD.as_bytes()).is_ok());
        let e = r.validate(b"servers: []\n").unwrap_err();
        assert_eq!(e.kind(), crate::error::Kind::Config);
        assert!(e.to_string().contains("servers"), "{e}");
        let bad_regex = format!("{GOOD}    policy: {{ tool_rules: {{ t: {{ args: {{ a: {{ regex: '(' }} }} }} }} }}\n");
        assert!(r.validate(bad_regex.as_bytes()).is_err());
        assert!(r.validate(b"\xff\xfe").unwrap_err().to_string().contains("UTF-8"));
        std::fs::remove_dir_all(d).ok();
    }
}
