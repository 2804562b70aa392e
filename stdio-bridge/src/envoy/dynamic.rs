//! Envoy's own dynamic configuration for `mcpx run`, so a reload never
//! restarts Envoy (Envoy re-reads a watched resource file when a new version is
//! renamed into place, and a rejected update keeps the old config).
//!
//! `render::bootstrap` gives the complete static config (what `mcpx render`
//! prints). This module splits it: the listener goes to a filesystem LDS
//! file, its routes to an RDS file, the clusters to a CDS file, and the wasm
//! filter's config to an ECDS file the listener refers to. A policy-only
//! change then rewrites just the ECDS file: applied in tens of milliseconds,
//! on open keep-alive connections too, without draining the listener. Adding
//! or removing a server touches clusters and routes, not the listener, so
//! open connections (and long streams) are not drained either. Unchanged
//! clusters keep their state (outlier detection / breaker); the wasm VM keeps
//! its `vm_id`, so shared data (the integrity baseline) survives.
//!
//! Envoy only notices a file that is renamed into its watched directory, so
//! each resource lives in its own directory and is written temp-then-rename.

use crate::error::{Error, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
/// The main listener's name, as `render::listener` names it.
const MAIN_LISTENER: &str = "mcpx";
const HCM_NAME: &str = "envoy.filters.network.http_connection_manager";
/// The ECDS resource name, which is also the http filter's name.
pub const FILTER_NAME: &str = "mcpx";

/// One dynamic resource file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Clusters (CDS). Written first, so new routes find their clusters.
    Clusters,
    /// The wasm filter config (ECDS).
    Filter,
    /// The route table (RDS): applies to open connections, no drain.
    Routes,
    /// The listener (LDS). Changing it drains old connections.
    Listener,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Clusters, Kind::Filter, Kind::Routes, Kind::Listener];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Clusters => "clusters",
            Kind::Filter => "filter",
            Kind::Routes => "routes",
            Kind::Listener => "listener",
        }
    }

    fn dir_name(self) -> &'static str {
        match self {
            Kind::Clusters => "cds",
            Kind::Filter => "ecds",
            Kind::Routes => "rds",
            Kind::Listener => "lds",
        }
    }
}

/// Where the dynamic files live: `DIR/{lds,cds,ecds}/resources.json`.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn dir_of(&self, kind: Kind) -> PathBuf {
        self.dir.join(kind.dir_name())
    }

    pub fn file_of(&self, kind: Kind) -> PathBuf {
        self.dir_of(kind).join("resources.json")
    }

    fn config_source(&self, kind: Kind) -> Value {
        json!({
            "resource_api_version": "V3",
            "path_config_source": {
                "path": self.file_of(kind).display().to_string(),
                "watched_directory": { "path": self.dir_of(kind).display().to_string() },
            },
        })
    }
}

/// A static bootstrap split into what Envoy starts with and the three files.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Everything but listeners and clusters, plus `dynamic_resources`.
    pub bootstrap: Value,
    pub listeners: Value,
    pub routes: Value,
    pub clusters: Value,
    pub filter: Value,
}

impl Split {
    pub fn file(&self, kind: Kind) -> &Value {
        match kind {
            Kind::Clusters => &self.clusters,
            Kind::Filter => &self.filter,
            Kind::Routes => &self.routes,
            Kind::Listener => &self.listeners,
        }
    }
}

/// Splits a bootstrap from `render::bootstrap`.
pub fn split(mut bootstrap: Value, layout: &Layout) -> Result<Split> {
    let statics = bootstrap
        .get_mut("static_resources")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| Error::internal("the rendered bootstrap has no static_resources"))?;
    let mut listeners = statics.remove("listeners").unwrap_or_else(|| json!([]));
    let clusters = statics.remove("clusters").unwrap_or_else(|| json!([]));
    let statics_empty = statics.is_empty();
    if statics_empty {
        bootstrap.as_object_mut().map(|b| b.remove("static_resources"));
    }
    let mut wasm = None;
    let mut routes = Vec::new();
    for listener in listeners.as_array_mut().into_iter().flatten() {
        // Only the main listener's routes and filter go to RDS and ECDS (a
        // filesystem RDS file holds one route config). Others, i.e. the
        // loopback control listener, keep theirs inline and share the VM by
        // vm_id; they never change on reload.
        let main = listener.get("name").and_then(Value::as_str) == Some(MAIN_LISTENER);
        if !main {
            continue;
        }
        for hcm in hcms(listener) {
            // The route table moves to RDS, referred to by name.
            if let Some(rc) = hcm.as_object_mut().and_then(|h| h.remove("route_config")) {
                let name = rc
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| Error::internal("a rendered route_config has no name"))?;
                hcm["rds"] = json!({ "route_config_name": name, "config_source": layout.config_source(Kind::Routes) });
                routes.push(rc);
            }
            for filter in hcm.get_mut("http_filters").and_then(Value::as_array_mut).into_iter().flatten() {
                if filter.pointer("/typed_config/@type").and_then(Value::as_str) != Some(WASM_TYPE) {
                    continue;
                }
                let typed_config = filter.get("typed_config").cloned().unwrap_or(Value::Null);
                if wasm.as_ref().is_some_and(|w| *w != typed_config) {
                    return Err(Error::internal("the rendered listeners hold two different mcpx filters"));
                }
                wasm = Some(typed_config);
                *filter = json!({
                    "name": FILTER_NAME,
                    "config_discovery": {
                        "config_source": layout.config_source(Kind::Filter),
                        "type_urls": [WASM_TYPE],
                    },
                });
            }
        }
    }
    let wasm = wasm.ok_or_else(|| Error::internal("the rendered listener has no mcpx wasm filter"))?;
    bootstrap["dynamic_resources"] = json!({
        "lds_config": layout.config_source(Kind::Listener),
        "cds_config": layout.config_source(Kind::Clusters),
    });
    let resources = |type_url: &str, items: Value| -> Value {
        let items: Vec<Value> = items
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                let mut r = json!({ "@type": type_url });
                if let (Some(r), Some(i)) = (r.as_object_mut(), i.as_object()) {
                    r.extend(i.clone());
                }
                r
            })
            .collect();
        json!({ "resources": items })
    };
    Ok(Split {
        bootstrap,
        listeners: resources("type.googleapis.com/envoy.config.listener.v3.Listener", listeners),
        routes: resources("type.googleapis.com/envoy.config.route.v3.RouteConfiguration", Value::Array(routes)),
        clusters: resources("type.googleapis.com/envoy.config.cluster.v3.Cluster", clusters),
        filter: json!({ "resources": [{
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": FILTER_NAME,
            "typed_config": wasm,
        }] }),
    })
}

/// The config of every HTTP connection manager in a listener.
fn hcms(listener: &mut Value) -> impl Iterator<Item = &mut Value> {
    listener
        .get_mut("filter_chains")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(|chain| chain.get_mut("filters").and_then(Value::as_array_mut))
        .flatten()
        .filter(|f| f.get("name").and_then(Value::as_str) == Some(HCM_NAME))
        .filter_map(|f| f.get_mut("typed_config"))
}

/// Writes `data` to `path` so Envoy sees it: owner-only (configs may hold
/// secrets), to a temp file in the same directory, then renamed over.
pub fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().ok_or_else(|| Error::internal(format!("{} has no directory", path.display())))?;
    if !dir.is_dir() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).recursive(true).create(dir).map_err(|e| Error::io("create", dir, e))?;
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io("write", &tmp, e))?;
    f.write_all(data).and_then(|_| f.sync_all()).map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("write", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envoy::render::{bootstrap, RenderOptions};
    use mcpx_filter::config::{Config, Mode};

    fn split_of(yaml: &str) -> Split {
        let opts = RenderOptions {
            listen: ("127.0.0.1".into(), 8080),
            admin: "127.0.0.1:9901".parse().unwrap(),
            wasm_path: "/x/mcpx_filter.wasm".into(),
            control: Some("/run/mcpx/control.sock".into()),
            bridge: None,
        };
        let b = bootstrap(&Config::from_yaml(yaml, Mode::Gateway).unwrap(), &opts).unwrap();
        split(b, &Layout { dir: "/run/mcpx".into() }).unwrap()
    }

    #[test]
    fn splits_into_lds_cds_ecds() {
        let s = split_of("servers:\n  - name: demo\n    url: http://127.0.0.1:3001\n");
        assert!(s.bootstrap.get("static_resources").is_none());
        assert_eq!(
            s.bootstrap["dynamic_resources"]["lds_config"]["path_config_source"]["path"],
            "/run/mcpx/lds/resources.json"
        );
        assert_eq!(
            s.bootstrap["dynamic_resources"]["cds_config"]["path_config_source"]["watched_directory"]["path"],
            "/run/mcpx/cds"
        );
        assert_eq!(s.listeners["resources"][0]["@type"], "type.googleapis.com/envoy.config.listener.v3.Listener");
        assert_eq!(s.listeners["resources"][0]["name"], "mcpx");
        assert!(s.clusters["resources"].as_array().unwrap().iter().any(|c| c["name"] == "mcpx_server_demo"));
        let hcm = &s.listeners["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"];
        assert!(hcm.get("route_config").is_none());
        assert_eq!(hcm["rds"]["route_config_name"], "mcpx");
        assert_eq!(hcm["rds"]["config_source"]["path_config_source"]["path"], "/run/mcpx/rds/resources.json");
        assert_eq!(s.routes["resources"][0]["@type"], "type.googleapis.com/envoy.config.route.v3.RouteConfiguration");
        // Envoy's filesystem RDS takes exactly one route config per file: the
        // control listener keeps its routes and filter inline.
        assert_eq!(s.routes["resources"].as_array().unwrap().len(), 1);
        let control = &s.listeners["resources"][1];
        assert_eq!(control["name"], "mcpx_control");
        assert!(control["filter_chains"][0]["filters"][0]["typed_config"].get("route_config").is_some());
        let routes = s.routes["resources"][0]["virtual_hosts"][0]["routes"].as_array().unwrap();
        assert!(routes.iter().any(|r| r["match"]["path"] == "/mcp/demo"));
        let filters = hcm["http_filters"].as_array().unwrap();
        let f = filters.iter().find(|f| f.get("config_discovery").is_some()).unwrap();
        assert!(!filters.iter().any(|f| f.pointer("/typed_config/@type").and_then(Value::as_str) == Some(WASM_TYPE)));
        assert_eq!(f["name"], FILTER_NAME);
        assert_eq!(
            f["config_discovery"]["config_source"]["path_config_source"]["path"],
            "/run/mcpx/ecds/resources.json"
        );
        assert_eq!(s.filter["resources"][0]["name"], FILTER_NAME);
        assert_eq!(s.filter["resources"][0]["typed_config"]["config"]["vm_config"]["vm_id"], "mcpx");
    }

    #[test]
    fn a_policy_change_touches_only_the_filter() {
        let a = split_of("servers:\n  - name: demo\n    url: http://127.0.0.1:3001\n");
        let b =
            split_of("servers:\n  - name: demo\n    url: http://127.0.0.1:3001\n    policy: { deny_tools: [echo] }\n");
        assert_eq!(
            (a.bootstrap == b.bootstrap, a.listeners == b.listeners, a.routes == b.routes, a.clusters == b.clusters),
            (true, true, true, true)
        );
        assert_ne!(a.filter, b.filter);
        let c = split_of(
            "servers:\n  - name: demo\n    url: http://127.0.0.1:3001\n  - name: two\n    url: http://127.0.0.1:3002\n",
        );
        // A new server: clusters and routes, never the listener (no drain).
        assert_eq!(a.listeners, c.listeners);
        assert_ne!(a.routes, c.routes);
        assert_ne!(a.clusters, c.clusters);
    }
}
