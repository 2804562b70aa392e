//! One child serves every client of a stdio server, so state the child keeps
//! per session would be shared by everyone. The bridge keeps identities
//! apart where MCP has such state (the identity comes from the filter, in
//! `x-mcpx-identity`; "" when auth is off):
//!
//! - Tasks (2025-11-25): the task id in the answer to a task-augmented
//!   request (`params.task`) is recorded as the caller's. `tasks/get`,
//!   `tasks/result` and `tasks/cancel` for a task the caller does not own are
//!   answered "task not found" by the bridge and never reach the child (the
//!   same answer as for a task that does not exist, so ids cannot be probed);
//!   `tasks/list` answers keep only the caller's tasks. Other `tasks/*`
//!   methods are refused (nothing is known about whose state they touch).
//! - `logging/setLevel` changes the child's level for every client: it is
//!   refused, never forwarded.

use super::reply::Reply;
use super::sanitize;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};

/// Task ids remembered per server; the oldest is forgotten first (its owner
/// then gets "task not found", never someone else's task).
pub const MAX_TASKS: usize = 10_000;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const INTERNAL_ERROR: i64 = -32603;

/// What to do with one request.
#[derive(Debug)]
pub enum Plan {
    Pass,
    /// Task-augmented: record the task id of the answer as the caller's.
    CreatesTask,
    /// `tasks/list`: keep only the caller's tasks in the answer.
    ListTasks,
    /// Answered by the bridge; the child never sees it.
    Answer(Reply),
}

/// Task id -> owner identity (None: two identities were given the same id
/// by the child, so nobody may use it).
#[derive(Default)]
pub struct TaskOwners {
    owner: HashMap<String, Option<String>>,
    order: VecDeque<String>,
}

impl TaskOwners {
    fn owns(&self, task: &str, identity: &str) -> bool {
        matches!(self.owner.get(task), Some(Some(o)) if o == identity)
    }

    fn record(&mut self, task: &str, identity: &str) {
        match self.owner.get_mut(task) {
            Some(slot) => {
                if slot.as_deref() != Some(identity) {
                    *slot = None;
                }
            }
            None => {
                if self.order.len() >= MAX_TASKS {
                    if let Some(old) = self.order.pop_front() {
                        self.owner.remove(&old);
                    }
                }
                self.owner.insert(task.to_string(), Some(identity.to_string()));
                self.order.push_back(task.to_string());
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.owner.len()
    }
}

/// Decides how a request from `identity` is handled.
pub fn plan(message: &Value, identity: &str, owners: &TaskOwners, server: &str) -> Plan {
    let method = message.get("method").and_then(Value::as_str).unwrap_or("");
    let params = message.get("params");
    match method {
        "logging/setLevel" => Plan::Answer(Reply::error(
            METHOD_NOT_FOUND,
            &format!(
                "logging/setLevel is not relayed to the stdio server `{server}`: its one process serves every \
                 client, so one client's level would apply to all"
            ),
        )),
        "tasks/get" | "tasks/result" | "tasks/cancel" => {
            let task = params.and_then(|p| p.get("taskId")).and_then(Value::as_str);
            match task {
                Some(t) if owners.owns(t, identity) => Plan::Pass,
                // The same answer whether the task is someone else's or does not exist.
                _ => Plan::Answer(Reply::error(INVALID_PARAMS, "Failed to retrieve task: Task not found")),
            }
        }
        "tasks/list" => Plan::ListTasks,
        m if m.starts_with("tasks/") => Plan::Answer(Reply::error(
            METHOD_NOT_FOUND,
            &format!(
                "{} is not relayed to the stdio server `{server}`: the gateway cannot tell whose tasks it touches",
                sanitize::for_log(m.as_bytes(), sanitize::NAME_CHARS)
            ),
        )),
        _ if params.and_then(|p| p.get("task")).is_some() => Plan::CreatesTask,
        _ => Plan::Pass,
    }
}

/// After the child answered: records a created task, or filters a list.
pub fn after(plan: &Plan, reply: Reply, identity: &str, owners: &mut TaskOwners) -> Reply {
    match plan {
        Plan::CreatesTask => {
            if let Some(task) = reply.result_value().as_ref().and_then(created_task) {
                owners.record(&task, identity);
            }
            reply
        }
        Plan::ListTasks => {
            if !reply.is_result() {
                return reply;
            }
            match reply.result_value() {
                Some(Value::Object(mut result)) => match result.get_mut("tasks").and_then(Value::as_array_mut) {
                    Some(tasks) => {
                        tasks.retain(|t| {
                            t.get("taskId").and_then(Value::as_str).is_some_and(|id| owners.owns(id, identity))
                        });
                        Reply::result(&Value::Object(result))
                    }
                    None => withheld(),
                },
                _ => withheld(),
            }
        }
        Plan::Pass | Plan::Answer(_) => reply,
    }
}

/// Fail closed: a list the bridge cannot filter per caller is not passed.
fn withheld() -> Reply {
    Reply::error(INTERNAL_ERROR, "the server's tasks/list answer is not in the expected form, so it is withheld")
}

/// The task id of a `CreateTaskResult` (`{"task": {"taskId": …}}`).
fn created_task(result: &Value) -> Option<String> {
    result.get("task")?.get("taskId")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(method: &str, params: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    }

    fn created(id: &str) -> Reply {
        Reply::result(&json!({"task": {"taskId": id, "status": "working"}}))
    }

    #[test]
    fn tasks_belong_to_the_identity_that_created_them() {
        let mut owners = TaskOwners::default();
        let call = req("tools/call", json!({"name": "x", "task": {"ttl": 1000}}));
        let p = plan(&call, "alice", &owners, "s");
        assert!(matches!(p, Plan::CreatesTask));
        after(&p, created("t-1"), "alice", &mut owners);
        for m in ["tasks/get", "tasks/result", "tasks/cancel"] {
            assert!(matches!(plan(&req(m, json!({"taskId": "t-1"})), "alice", &owners, "s"), Plan::Pass));
            let Plan::Answer(r) = plan(&req(m, json!({"taskId": "t-1"})), "bob", &owners, "s") else { panic!("{m}") };
            assert_eq!(r.error_code(), Some(INVALID_PARAMS));
            // Indistinguishable from a task that does not exist.
            let Plan::Answer(r2) = plan(&req(m, json!({"taskId": "nope"})), "bob", &owners, "s") else { panic!() };
            assert_eq!(r.message(&json!(1)), r2.message(&json!(1)));
        }
        assert!(matches!(plan(&req("tasks/get", json!({})), "alice", &owners, "s"), Plan::Answer(_)));
        assert!(matches!(plan(&req("tasks/get", json!({"taskId": 7})), "alice", &owners, "s"), Plan::Answer(_)));
    }

    #[test]
    fn tasks_list_keeps_only_the_callers_tasks_and_fails_closed() {
        let mut owners = TaskOwners::default();
        owners.record("a1", "alice");
        owners.record("b1", "bob");
        let list = Reply::result(&json!({"tasks": [{"taskId": "a1"}, {"taskId": "b1"}, {"taskId": "x"}, {}],
            "nextCursor": "c"}));
        let p = plan(&req("tasks/list", json!({})), "bob", &owners, "s");
        let out = after(&p, list.clone(), "bob", &mut owners).result_value().unwrap();
        assert_eq!(out, json!({"tasks": [{"taskId": "b1"}], "nextCursor": "c"}));
        let odd = Reply::result(&json!({"items": [{"taskId": "a1"}]}));
        assert_eq!(after(&p, odd, "bob", &mut owners).error_code(), Some(INTERNAL_ERROR));
        let err = Reply::error(-32000, "busy");
        assert_eq!(after(&p, err, "bob", &mut owners).error_code(), Some(-32000));
    }

    #[test]
    fn an_id_given_to_two_identities_is_nobodys_and_the_map_is_bounded() {
        let mut owners = TaskOwners::default();
        owners.record("t", "alice");
        owners.record("t", "alice");
        assert!(owners.owns("t", "alice"));
        owners.record("t", "bob");
        assert!(!owners.owns("t", "alice") && !owners.owns("t", "bob"));
        for i in 0..MAX_TASKS + 10 {
            owners.record(&format!("n{i}"), "carol");
        }
        assert_eq!(owners.len(), MAX_TASKS);
        assert!(!owners.owns("n0", "carol") && owners.owns(&format!("n{}", MAX_TASKS + 9), "carol"));
    }

    #[test]
    fn set_level_and_unknown_task_methods_never_reach_the_child() {
        let owners = TaskOwners::default();
        let p = plan(&req("logging/setLevel", json!({"level": "debug"})), "alice", &owners, "s");
        let Plan::Answer(r) = p else { panic!() };
        assert_eq!(r.error_code(), Some(METHOD_NOT_FOUND));
        assert!(matches!(plan(&req("tasks/purge", json!({})), "alice", &owners, "s"), Plan::Answer(_)));
        assert!(matches!(plan(&req("tools/call", json!({"name": "x"})), "alice", &owners, "s"), Plan::Pass));
    }
}
