//! The `Mcp-*` request headers of the 2026-07-28 transport, checked against
//! the body before anything is forwarded: `mcpheaders` (the `Mcp-Method` /
//! `Mcp-Name` routing headers must agree with the body), `paramheaders`
//! (each tool's `x-mcp-header` map and the `Mcp-Param-*` headers of a call)
//! and `headervalue` (the `=?base64?…?=` value encoding both read).

pub mod headervalue;
pub mod mcpheaders;
pub mod paramheaders;
