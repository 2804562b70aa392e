"""The fixture server for the official MCP conformance runner (test_conformance.py).

The runner's own reference server (`everything-server.ts`) lives only in the
conformance source repository (`examples/servers/typescript`); npm does not
ship it: the runner's tarball holds only `dist/` (0.2.0-alpha.12 adds
`requirements/`), and the example's package name, `mcp-conformance-test-server`,
is not on npm. So this is an independent server written from the runner's scenario list, i.e.
from what each scenario asks of a server (tool, resource and prompt names and
the exact results they check), with the official Python SDK's MCPServer over
Streamable HTTP. It is not a copy of the reference server.

    python conformance_server.py PORT

The SDK serves both protocol eras from the same app, so the 0.1.16 suite
(handshake era) and the 2026-07-28 alpha suite run against the same process.
"""

import asyncio
import base64
import itertools
import json
import sys
from typing import Annotated, Any

from pydantic import Field

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp_types import (
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    AudioContent,
    ClientCapabilities,
    Completion,
    EmbeddedResource,
    EmptyResult,
    ImageContent,
    InputRequiredResult,
    MissingRequiredClientCapabilityErrorData,
    SamplingCapability,
    SamplingMessage,
    SetLevelRequestParams,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    UnsubscribeRequestParams,
)

# A 1x1 PNG and a zero-length WAV: the scenarios check type and mime type only.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA="


class MemoryEventStore(EventStore):
    """Keeps every SSE event so a client that reconnects with Last-Event-ID
    gets what it missed (SSE polling, SEP-1699)."""

    def __init__(self) -> None:
        self._events: list[tuple[str, str, Any]] = []  # (event id, stream id, message)
        self._ids = itertools.count(1)

    async def store_event(self, stream_id, message):
        event_id = f"{stream_id}_{next(self._ids)}"
        self._events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id, send_callback: EventCallback):
        index = next((i for i, (eid, _, _) in enumerate(self._events) if eid == last_event_id), None)
        if index is None:
            return None
        stream_id = self._events[index][1]
        for eid, sid, message in self._events[index + 1 :]:
            if sid == stream_id and message is not None:
                await send_callback(EventMessage(message, eid))
        return stream_id


server = MCPServer("mcpx-conformance-fixture", version="1.0.0")
subscriptions: set[str] = set()


# --- tools -----------------------------------------------------------------


@server.tool(description="Returns one text block.")
def test_simple_text() -> list:
    return [TextContent(type="text", text="This is a simple text response for testing.")]


@server.tool(description="Returns one PNG image block.")
def test_image_content() -> list:
    return [ImageContent(type="image", data=PNG, mimeType="image/png")]


@server.tool(description="Returns one WAV audio block.")
def test_audio_content() -> list:
    return [AudioContent(type="audio", data=WAV, mimeType="audio/wav")]


@server.tool(description="Returns one embedded text resource.")
def test_embedded_resource() -> list:
    return [
        EmbeddedResource(
            type="resource",
            resource=TextResourceContents(
                uri="test://embedded-resource", mimeType="text/plain", text="This is an embedded resource content."
            ),
        )
    ]


@server.tool(description="Returns text, image and an embedded resource.")
def test_multiple_content_types() -> list:
    return [
        TextContent(type="text", text="Multiple content types test:"),
        ImageContent(type="image", data=PNG, mimeType="image/png"),
        EmbeddedResource(
            type="resource",
            resource=TextResourceContents(
                uri="test://mixed-content-resource",
                mimeType="application/json",
                text=json.dumps({"test": "data", "value": 123}, separators=(",", ":")),
            ),
        ),
    ]


@server.tool(description="Sends three info log notifications while it runs.")
async def test_tool_with_logging(ctx: Context) -> str:
    await ctx.info("Tool execution started")
    await asyncio.sleep(0.05)
    await ctx.info("Tool processing data")
    await asyncio.sleep(0.05)
    await ctx.info("Tool execution completed")
    return "Tool with logging executed successfully"


@server.tool(description="Reports progress 0, 50 and 100 of 100.")
async def test_tool_with_progress(ctx: Context) -> str:
    for step in (0, 50, 100):
        await ctx.report_progress(step, 100)
        if step < 100:
            await asyncio.sleep(0.05)
    return "Tool with progress executed successfully"


@server.tool(description="Always fails: the error is a tool result with isError.")
def test_error_handling() -> str:
    raise RuntimeError("This tool intentionally returns an error for testing")


@server.tool(description="Asks the client's LLM (sampling/createMessage).")
async def test_sampling(prompt: str, ctx: Context) -> str:
    result = await ctx.session.create_message(
        [SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
        max_tokens=100,
        related_request_id=ctx.request_context.request_id,
    )
    text = getattr(result.content, "text", None) or str(result.content)
    return f"LLM response: {text}"


async def elicit(ctx: Context, message: str, schema: dict, label: str) -> str:
    # Sent on the tools/call's own SSE stream (related_request_id). Without it
    # the SDK sends the request on the standalone GET stream, which the runner
    # may not have opened yet: the request is then lost and the call times out
    # (-32001 after 60 s), directly as through any proxy.
    result = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_context.request_id)
    return f"{label}: action={result.action}, content={json.dumps(result.content)}"


@server.tool(description="Asks the user for a username and an email (elicitation/create).")
async def test_elicitation(message: str, ctx: Context) -> str:
    schema = {
        "type": "object",
        "properties": {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"},
        },
        "required": ["username", "email"],
    }
    result = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_context.request_id)
    return f"User response: action={result.action}, content={json.dumps(result.content)}"


@server.tool(description="Elicitation whose schema has a default for every primitive type (SEP-1034).")
async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "default": "John Doe"},
            "age": {"type": "integer", "default": 30},
            "score": {"type": "number", "default": 95.5},
            "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
            "verified": {"type": "boolean", "default": True},
        },
    }
    return await elicit(ctx, "Please confirm your details", schema, "Elicitation completed")


@server.tool(description="Elicitation with the five enum forms (SEP-1330).")
async def test_elicitation_sep1330_enums(ctx: Context) -> str:
    titled = [{"const": f"value{i}", "title": t} for i, t in enumerate(["First Option", "Second Option", "Third Option"], 1)]
    choices = [{"const": f"value{i}", "title": t} for i, t in enumerate(["First Choice", "Second Choice", "Third Choice"], 1)]
    schema = {
        "type": "object",
        "properties": {
            "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
            "titledSingle": {"type": "string", "oneOf": titled},
            "legacyEnum": {
                "type": "string",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
            "titledMulti": {"type": "array", "items": {"anyOf": choices}},
        },
    }
    return await elicit(ctx, "Pick some options", schema, "Elicitation completed")


@server.tool(description="Closes its SSE stream before answering; the answer comes on reconnection (SEP-1699).")
async def test_reconnection(ctx: Context) -> str:
    await asyncio.sleep(0.05)
    await ctx.close_sse_stream()
    await asyncio.sleep(0.2)
    return "Reconnection test completed"


SCHEMA_2020_12 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}


@server.tool(description="A tool whose `region` argument clients mirror as the Mcp-Param-Region header (SEP-2243).")
def test_header_param(region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})]) -> str:
    return f"region {region}"


# --- 2026-07-28: input-required results (SEP-2322) -------------------------
# A tool (or prompt) answers with `resultType: input_required` and the
# requests it needs; the client retries the same call with `inputResponses`
# (and the echoed `requestState`, which the SDK seals so a tampered one is refused).

def ask_name(key: str, message: str = "What is your name?") -> dict:
    return {"method": "elicitation/create", "params": {"message": message, "requestedSchema": {
        "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}}


def ask_sample(text: str, max_tokens: int) -> dict:
    return {"method": "sampling/createMessage", "params": {
        "messages": [{"role": "user", "content": {"type": "text", "text": text}}], "maxTokens": max_tokens}}


ASK_ROOTS = {"method": "roots/list", "params": {}}


def answers(ctx: Context) -> dict[str, Any]:
    raw = ctx.input_responses or {}
    return {k: (v.model_dump(by_alias=True, exclude_none=True) if hasattr(v, "model_dump") else v)
            for k, v in raw.items()}


def need(requests: dict[str, dict], state: str | None = None) -> InputRequiredResult:
    return InputRequiredResult.model_validate(
        {"resultType": "input_required", "inputRequests": requests, **({"requestState": state} if state else {})})


def content_of(answer: Any) -> dict:
    return answer.get("content") if isinstance(answer, dict) and isinstance(answer.get("content"), dict) else {}


@server.tool(description="Asks for the user's name through an input-required result.")
def test_input_required_result_elicitation(ctx: Context) -> str | InputRequiredResult:
    got = answers(ctx).get("user_name")
    if not isinstance(got, dict) or "name" not in content_of(got):
        return need({"user_name": ask_name("user_name")})
    return f"Hello, {content_of(got)['name']}!"


@server.tool(description="Asks the client's LLM through an input-required result.")
def test_input_required_result_sampling(ctx: Context) -> str | InputRequiredResult:
    got = answers(ctx).get("capital_question")
    if not isinstance(got, dict):
        return need({"capital_question": ask_sample("What is the capital of France?", 100)})
    return f"Sampling response: {content_of(got).get('text', '')}"


@server.tool(description="Asks for the client's roots through an input-required result.")
def test_input_required_result_list_roots(ctx: Context) -> str | InputRequiredResult:
    got = answers(ctx).get("client_roots")
    if not isinstance(got, dict) or not isinstance(got.get("roots"), list):
        return need({"client_roots": ASK_ROOTS})
    return "Roots: " + ", ".join(str(r.get("uri")) for r in got["roots"] if isinstance(r, dict))


@server.tool(description="Round-trips a requestState.")
def test_input_required_result_request_state(ctx: Context) -> str | InputRequiredResult:
    ask = {"confirm": {"method": "elicitation/create", "params": {"message": "Please confirm", "requestedSchema": {
        "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}}}
    if "confirm" not in answers(ctx) or ctx.request_state != "request-state-round-1":
        return need(ask, "request-state-round-1")
    return "state-ok: confirmed"


@server.tool(description="Asks for three inputs at once.")
def test_input_required_result_multiple_inputs(ctx: Context) -> str | InputRequiredResult:
    asks = {"user_name": ask_name("user_name"), "greeting": ask_sample("Generate a greeting", 50),
            "client_roots": ASK_ROOTS}
    if not set(asks) <= set(answers(ctx)) or ctx.request_state != "multiple-inputs":
        return need(asks, "multiple-inputs")
    return "All inputs received"


@server.tool(description="Two rounds of input, the state evolving between them.")
def test_input_required_result_multi_round(ctx: Context) -> str | InputRequiredResult:
    got, state = answers(ctx), ctx.request_state
    if state == "round-2" and "step2" in got:
        return "Multi-round completed"
    if state == "round-1" and "step1" in got:
        return need({"step2": {"method": "elicitation/create", "params": {
            "message": "Step 2: What is your favorite color?", "requestedSchema": {
                "type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]}}}}, "round-2")
    return need({"step1": ask_name("step1", "Step 1: What is your name?")}, "round-1")


@server.tool(description="Its requestState is sealed by the SDK: a tampered one is refused.")
def test_input_required_result_tampered_state(ctx: Context) -> str | InputRequiredResult:
    if ctx.request_state == "untampered" and "user_name" in answers(ctx):
        return "State verified"
    return need({"user_name": ask_name("user_name")}, "untampered")


@server.tool(description="Asks only for what the client declared it can answer.")
def test_input_required_result_capabilities(ctx: Context) -> str | InputRequiredResult:
    caps = ctx.client_capabilities
    asks = {}
    if caps is not None and caps.sampling is not None:
        asks["capital_question"] = ask_sample("What is the capital of France?", 100)
    if caps is not None and caps.elicitation is not None:
        asks["user_name"] = ask_name("user_name")
    if caps is not None and caps.roots is not None:
        asks["client_roots"] = ASK_ROOTS
    if not asks or set(asks) <= set(answers(ctx)):
        return "Capabilities respected"
    return need(asks)


@server.tool(description="Needs the client's sampling capability: refused with -32021 without it.")
def test_missing_capability(ctx: Context) -> str | InputRequiredResult:
    caps = ctx.client_capabilities
    if caps is None or caps.sampling is None:
        required = ClientCapabilities(sampling=SamplingCapability())
        data = MissingRequiredClientCapabilityErrorData(required_capabilities=required)
        raise MCPError(code=MISSING_REQUIRED_CLIENT_CAPABILITY, message="This tool needs the sampling capability",
                       data=data.model_dump(by_alias=True, mode="json", exclude_none=True))
    got = answers(ctx).get("capital_question")
    if not isinstance(got, dict):
        return need({"capital_question": ask_sample("What is the capital of France?", 100)})
    return "Sampling capability present"


@server.prompt(description="A prompt that needs elicited context first")
def test_input_required_result_prompt(ctx: Context) -> list | InputRequiredResult:
    got = answers(ctx).get("user_context")
    if not isinstance(got, dict):
        return need({"user_context": {"method": "elicitation/create", "params": {
            "message": "What context should the prompt use?", "requestedSchema": {
                "type": "object", "properties": {"context": {"type": "string"}}, "required": ["context"]}}}})
    return [UserMessage(content=f"Use this context: {content_of(got).get('context', '')}")]


# --- resources -------------------------------------------------------------


@server.resource("test://static-text", name="static-text", description="A static text resource", mime_type="text/plain")
def static_text() -> str:
    return "This is the content of the static text resource."


@server.resource(
    "test://static-binary", name="static-binary", description="A static binary resource", mime_type="image/png"
)
def static_binary() -> bytes:
    return base64.b64decode(PNG)


@server.resource(
    "test://template/{id}/data", name="template", description="A templated resource", mime_type="application/json"
)
def template(id: str) -> str:
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"}, separators=(",", ":"))


@server.resource(
    "test://watched-resource", name="watched-resource", description="A subscribable resource", mime_type="text/plain"
)
def watched() -> str:
    return "Watched resource content"


# --- prompts ---------------------------------------------------------------


@server.prompt(description="A prompt without arguments")
def test_simple_prompt() -> str:
    return "This is a simple prompt for testing."


@server.prompt(description="A prompt with two required arguments")
def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


@server.prompt(description="A prompt that embeds a resource")
def test_prompt_with_embedded_resource(resourceUri: str) -> list:
    resource = EmbeddedResource(
        type="resource",
        resource=TextResourceContents(uri=resourceUri, mimeType="text/plain", text="Embedded resource content for testing."),
    )
    return [UserMessage(content=resource), UserMessage(content="Please process the embedded resource above.")]


@server.prompt(description="A prompt with an image")
def test_prompt_with_image() -> list:
    return [
        UserMessage(content=ImageContent(type="image", data=PNG, mimeType="image/png")),
        UserMessage(content="Please analyze the image above."),
    ]


@server.completion()
async def complete(ref, argument, context):
    values = [v for v in ("paris", "park", "party") if v.startswith(argument.value or "")]
    return Completion(values=values, total=len(values), hasMore=False)


# --- handlers MCPServer has no decorator for ----------------------------------

lowlevel = server._lowlevel_server


async def set_level(ctx, params: SetLevelRequestParams) -> EmptyResult:
    return EmptyResult()


async def subscribe(ctx, params: SubscribeRequestParams) -> EmptyResult:
    subscriptions.add(str(params.uri))
    return EmptyResult()


async def unsubscribe(ctx, params: UnsubscribeRequestParams) -> EmptyResult:
    subscriptions.discard(str(params.uri))
    return EmptyResult()


lowlevel.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)
lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)


def add_schema_tool() -> None:
    """The JSON Schema 2020-12 tool: its inputSchema is given as is, so that
    `$schema`, `$defs` and `additionalProperties` reach tools/list untouched."""

    def json_schema_2020_12_tool(**kwargs: Any) -> str:
        return "ok"

    server.add_tool(json_schema_2020_12_tool, name="json_schema_2020_12_tool", description="Tool with JSON Schema 2020-12 features")
    tool = server._tool_manager.get_tool("json_schema_2020_12_tool")
    tool.parameters = SCHEMA_2020_12


add_schema_tool()


if __name__ == "__main__":
    port = int(sys.argv[1])
    # DNS-rebinding protection: only loopback Host/Origin values are served
    # (the dns-rebinding-protection scenario checks both directions).
    loopback = [f"{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]")] + ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=loopback,
        allowed_origins=[f"http://{h}" for h in loopback],
    )
    server.run(
        "streamable-http",
        host="127.0.0.1",
        port=port,
        event_store=MemoryEventStore(),
        retry_interval=500,
        transport_security=security,
    )
