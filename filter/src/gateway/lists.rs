//! The response phase: the list inspector for a forwarded request and the
//! rewrite of a JSON answer (an event stream is inspected event by event by
//! the glue with the same inspector).

use super::{Gateway, McpRequest};
use crate::envelope::{code, Reply, ReplyTo};
use crate::integrity::BaselineStore;
use crate::tools_list::inspect::ListInspector;
use serde_json::Value;

impl Gateway {
    /// The response-phase inspector of `tools/list` for this request.
    pub fn list_inspector<'a>(&'a self, req: &'a McpRequest) -> Option<ListInspector<'a>> {
        Some(ListInspector {
            server: &req.server,
            policy: self.effective(req)?,
            filter: self.config.inspection.filter_tools_list,
            integrity: self.config.inspection.tool_integrity,
            lock: self.config.inspection.pins.as_ref(),
        })
    }

    /// Response phase for a JSON answer: the new body, if it changed, and the
    /// integrity violations found. The answer to a list request
    /// (`list_ids` not empty) is always parsed; any other answer only when
    /// it might hold a list. An answer that might hold a list but cannot be
    /// inspected is replaced by an error, never passed.
    pub fn rewrite_tools_list(
        &self,
        req: &McpRequest,
        list_ids: &[Value],
        body: &[u8],
        store: &mut dyn BaselineStore,
    ) -> Result<crate::tools_list::inspect::Inspection, Reply> {
        let Some(inspector) = self.list_inspector(req) else {
            return Ok(Default::default());
        };
        let found =
            if list_ids.is_empty() { inspector.inspect_any(body, store) } else { inspector.inspect_json(body, store) };
        found.map_err(|e| Self::uninspectable(list_ids, &e.0))
    }

    /// The error that replaces a list that could not be inspected.
    pub fn uninspectable(list_ids: &[Value], why: &str) -> Reply {
        let to = ReplyTo::message(list_ids.first());
        Reply::error(
            502,
            code::UNAVAILABLE,
            &format!("the backend's answer could not be inspected for lists: {why}"),
            &to,
        )
    }
}
