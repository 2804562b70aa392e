//! The response body of a forwarded request: every list a client could read
//! in an answer (tools, prompts, resources, resource templates), whatever
//! request it answers, is found and inspected (`inspect`); each tool is
//! checked against its integrity pin (`crate::integrity`) and the list is
//! rewritten to drop what the caller may not see (`rewrite`), in one pass:
//! each tool is read once from its own bytes (`scan`) and the kept tools'
//! bytes are spliced into the answer.

pub mod inspect;
pub mod rewrite;
pub mod scan;
