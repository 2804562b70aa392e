//! How an answer is read, decided from its response headers alone: passed
//! through, refused, inspected as an event stream as it passes, or buffered
//! whole and inspected. The glue carries the choice out
//! (`on_http_response_headers`); every answer to a forwarded MCP request goes
//! through here when list inspection is on. An event stream is read event
//! by event by `sse`.

pub mod sse;

/// What to do with the body of an answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// No client reads a message from it: let it through untouched.
    PassThrough,
    /// Refuse it (502 with the envelope). `reason` is the audit reason.
    Refuse { reason: &'static str, why: String },
    /// An event stream: inspect event by event. `drop_ids`: remove event ids
    /// (an answer to a list request) so a resumed stream is inspected again
    /// rather than replayed from a cache.
    Sse { drop_ids: bool },
    /// A JSON answer: buffer it whole (headers held for Content-Length).
    BufferJson,
}

/// `status` is the `:status` header, `content_type` the `Content-Type`
/// (any case), `end_of_stream` whether the headers end the answer,
/// `list_request` whether the request asked for a list the gateway pinned.
pub fn classify(status: &str, content_type: &str, end_of_stream: bool, list_request: bool) -> Read {
    if status.starts_with('3') {
        // A redirect would take the client off the gateway to an answer it
        // never inspects.
        let why = format!("the backend answered {status} (a redirect); MCP answers must come from the gateway");
        return Read::Refuse { reason: "redirect", why };
    }
    // Clients read a message only from a 2xx answer with a body.
    if end_of_stream || !status.starts_with('2') {
        return Read::PassThrough;
    }
    // Clients pick the parser by substring of Content-Type (the TypeScript
    // SDK checks `includes`), so classify the same way.
    let content_type = content_type.to_ascii_lowercase();
    let (sse, json) = (content_type.contains("text/event-stream"), content_type.contains("json"));
    match (sse, json) {
        (true, true) => {
            // Different clients would read it differently.
            let why = format!("Content-Type {content_type:?} names both JSON and an event stream");
            Read::Refuse { reason: "ambiguous_answer", why }
        }
        (true, false) => Read::Sse { drop_ids: list_request },
        (false, true) => Read::BufferJson,
        (false, false) => Read::PassThrough,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_and_ambiguous_types_are_refused() {
        for s in ["301", "302", "307", "308"] {
            assert!(matches!(classify(s, "application/json", false, false), Read::Refuse { reason: "redirect", .. }));
            assert!(matches!(classify(s, "", true, false), Read::Refuse { reason: "redirect", .. }), "bodiless too");
        }
        let both = classify("200", "Application/JSON; x=text/event-stream", false, false);
        assert!(matches!(both, Read::Refuse { reason: "ambiguous_answer", .. }), "{both:?}");
    }

    #[test]
    fn only_2xx_bodies_are_read() {
        assert_eq!(classify("200", "application/json", false, false), Read::BufferJson);
        assert_eq!(classify("202", "application/json", true, false), Read::PassThrough);
        assert_eq!(classify("500", "application/json", false, false), Read::PassThrough);
        assert_eq!(classify("200", "text/plain", false, false), Read::PassThrough);
        assert_eq!(
            classify("200", "application/vnd.x+json", false, false),
            Read::BufferJson,
            "substring, as clients do"
        );
        assert_eq!(classify("200", "TEXT/EVENT-STREAM", false, false), Read::Sse { drop_ids: false });
        assert_eq!(classify("200", "text/event-stream", false, true), Read::Sse { drop_ids: true });
    }
}
