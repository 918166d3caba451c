//! The MCP server: an `rmcp` [`ServerHandler`] over the registry's current
//! catalog. One handler per session (protocol versions with sessions) or
//! per request (the stateless 2026-07-28 revision); every request reads
//! the snapshot of its moment, so a reload never changes a call in flight.

// Logging (`logging/setLevel`, `notifications/message`) is deprecated by the
// 2026-07-28 revision but is how the session-based ones report tool logs.
#![allow(deprecated)]

use std::sync::{Arc, Mutex};

use axum::http::request::Parts;
use base64::Engine as _;
use rmcp::ErrorData;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, GetPromptRequestParams,
    GetPromptResponse, GetPromptResult, Implementation, ListPromptsResult, ListToolsResult,
    LoggingLevel, LoggingMessageNotificationParam, PaginatedRequestParams,
    ProgressNotificationParam, ProgressToken, PromptMessage, ResourceContents, Role,
    ServerCapabilities, ServerInfo, ServerJsonRpcMessage, ServerNotification,
    SetLevelRequestParams, SubscriptionFilter,
};
use rmcp::service::{NotificationContext, RequestContext, RoleServer, SubscriptionContext};
use rmcp::{Peer, ServerHandler};
use serde_json::Value;
use tokio::sync::mpsc;

use super::decl::{self, Tool};
use crate::host::mcp_client::{ClientLink, ClientMessage, QUEUE};
use crate::identity::Caller;
use crate::identity::access::{AccessConfig, Denied, Target};
use crate::registry::Registry;
use crate::request::id::RequestId;
use crate::runtime::bindings::{mcp, types};
use crate::runtime::call::MCP;
use crate::runtime::{CallError, CallSpec, Plugin};

/// Serves the catalog of the registry's current snapshot.
#[derive(Clone)]
pub struct KilnMcp {
    registry: Arc<Registry>,
    access: Arc<AccessConfig>,
    billing: Arc<crate::billing::Billing>,
    session: Arc<Session>,
}

/// What one session remembers: the log level its client chose, and the
/// task that tells it about list changes (ended with the session).
struct Session {
    level: Mutex<LoggingLevel>,
    follower: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        let follower = self.follower.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(task) = follower.take() {
            task.abort();
        }
    }
}

impl KilnMcp {
    pub fn new(
        registry: Arc<Registry>,
        access: Arc<AccessConfig>,
        billing: Arc<crate::billing::Billing>,
    ) -> Self {
        KilnMcp {
            registry,
            access,
            billing,
            session: Arc::new(Session {
                // Until the client says otherwise: info and above.
                level: Mutex::new(LoggingLevel::Info),
                follower: Mutex::new(None),
            }),
        }
    }

    fn check_tool(&self, plugin: &Plugin, tool: &Tool, caller: &Caller) -> Result<(), Denied> {
        let target = Target::Tool {
            plugin: &plugin.manifest.name,
            name: &tool.name,
        };
        let declared = (!tool.access.roles.is_empty()).then_some(tool.access.roles.as_slice());
        self.access.check(target, declared, caller.principal())
    }

    fn check_prompt(
        &self,
        plugin: &Plugin,
        prompt: &decl::Prompt,
        caller: &Caller,
    ) -> Result<(), Denied> {
        let target = Target::Prompt {
            plugin: &plugin.manifest.name,
            name: &prompt.name,
        };
        let declared = (!prompt.access.roles.is_empty()).then_some(prompt.access.roles.as_slice());
        self.access.check(target, declared, caller.principal())
    }

    fn level(&self) -> LoggingLevel {
        *self.session.level.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `caller` may call `tool` (the check `tools/call` makes
    /// before [`KilnMcp::run_tool`]).
    pub(super) fn may_call(&self, plugin: &Plugin, tool: &Tool, caller: &Caller) -> bool {
        self.check_tool(plugin, tool, caller).is_ok()
    }

    /// Runs one call of `tool`, already found and allowed for the caller:
    /// the argument check, the hold of its price, the plugin call with its
    /// progress and log messages sent through `notify`, the outcome
    /// checked, the charge posted.
    pub(super) async fn run_tool(
        &self,
        plugin: &Plugin,
        tool: &Tool,
        arguments: rmcp::model::JsonObject,
        from: ToolCaller,
        notify: Notify,
    ) -> CallToolResponse {
        let arguments = Value::Object(arguments);
        // Bad arguments are the model's to fix: an error result it can read,
        // not a protocol error its client may hide.
        if let Some(errors) = decl::argument_errors(tool, &arguments) {
            return failed(format!(
                "invalid arguments for tool '{}': {errors}",
                tool.name
            ));
        }
        let ToolCaller {
            caller,
            request_id,
            idempotency_key: key,
            progress: token,
        } = from;
        let key = key.as_deref();
        // A priced tool holds its price before the plugin runs.
        let price =
            self.billing
                .tool_price(&plugin.manifest.name, &tool.name, tool.access.price_micros);
        let hold = if price > 0 {
            if key.is_some_and(|k| !crate::billing::idempotency_key_ok(k)) {
                return failed("Idempotency-Key must be 1 to 255 visible ASCII characters".into());
            }
            match self
                .billing
                .hold(
                    caller.principal(),
                    key,
                    &request_id,
                    &plugin.manifest.name,
                    &format!("tool {}", tool.name),
                    price,
                )
                .await
            {
                Ok(hold) => Some(hold),
                Err(refused) => return payment_refused(&refused),
            }
        } else {
            None
        };
        let caller = caller.for_plugin();
        let call_context = mcp::CallContext {
            request_id: request_id.to_string(),
            principal: caller.as_ref().map(|c| c.json.clone()),
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let link = ClientLink::new(tx, token.is_some());
        let arguments = arguments.to_string();
        let spec = CallSpec::new(request_id, tool.name.as_str())
            .caller(caller)
            .client(Some(link))
            .meter(hold.as_ref().map(crate::billing::Hold::meter));
        let call = plugin.call(&MCP, spec, async |mcp, store, instance| {
            let guest = mcp.load(&mut *store, &instance)?;
            guest
                .call_call_tool(store, &tool.name, &arguments, &call_context)
                .await
        });
        let forward = forward(rx, notify, token, self.level(), &plugin.manifest.name);
        let (outcome, ()) = tokio::join!(call, forward);
        let result = tool_outcome(plugin, tool, outcome);
        if let Some(hold) = hold {
            // A result costs the price (or what the tool charged); an error
            // result costs only what the tool charged before it failed.
            if let Err(e) = hold.finish(result.is_error != Some(true)).await {
                tracing::error!(error = %e, tool = %tool.name, "the ledger could not record a priced tool call");
                return failed(format!(
                    "tool '{}' ran but its charge could not be recorded: {}",
                    tool.name,
                    e.for_caller()
                ));
            }
        }
        result.into()
    }
}

impl ServerHandler for KilnMcp {
    fn get_info(&self) -> ServerInfo {
        let capabilities = ServerCapabilities::builder()
            .enable_logging()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_tools()
            .enable_tool_list_changed()
            .build();
        ServerInfo::new(capabilities)
            .with_server_info(
                Implementation::new("kiln", env!("CARGO_PKG_VERSION")).with_title("Kiln"),
            )
            .with_instructions(
                "Tools and prompts provided by the plugins loaded in this Kiln engine. \
                 The lists change when plugins are added, replaced or removed.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        // A caller sees the tools it may call.
        let snapshot = self.registry.snapshot();
        let caller = caller(&context);
        let tools = snapshot
            .mcp
            .tool_list
            .iter()
            .filter(|t| {
                snapshot
                    .mcp
                    .tool(&t.name)
                    .is_some_and(|(plugin, tool)| self.check_tool(plugin, tool, &caller).is_ok())
            })
            .cloned()
            .collect::<Vec<_>>();
        let hidden = snapshot.mcp.tool_list.len() - tools.len();
        if hidden > 0 && caller.principal().is_none() {
            // The list is right, but a client that forgot its credential
            // should be able to find out why it is short.
            tracing::info!(
                hidden,
                shown = tools.len(),
                "tools/list for an anonymous caller: {hidden} tool(s) need a credential and are not listed"
            );
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let snapshot = self.registry.snapshot();
        let caller = caller(&context);
        let prompts = snapshot
            .mcp
            .prompt_list
            .iter()
            .filter(|p| {
                snapshot
                    .mcp
                    .prompt(&p.name)
                    .is_some_and(|(plugin, prompt)| {
                        self.check_prompt(plugin, prompt, &caller).is_ok()
                    })
            })
            .cloned()
            .collect();
        Ok(ListPromptsResult::with_all_items(prompts))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let snapshot = self.registry.snapshot();
        let Some((plugin, tool)) = snapshot.mcp.tool(&request.name) else {
            return Err(ErrorData::invalid_params(
                format!("unknown tool '{}'", crate::text::echo(&request.name)),
                None,
            ));
        };
        let caller = caller(&context);
        self.check_tool(plugin, tool, &caller)
            .map_err(|d| denied(&d))?;
        let from = ToolCaller {
            caller,
            request_id: request_id(&context),
            idempotency_key: idempotency_key(&context).map(str::to_owned),
            progress: context.meta.get_progress_token(),
        };
        let arguments = request.arguments.unwrap_or_default();
        Ok(self
            .run_tool(
                plugin,
                tool,
                arguments,
                from,
                Notify::Peer(context.peer.clone()),
            )
            .await)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let snapshot = self.registry.snapshot();
        let Some((plugin, prompt)) = snapshot.mcp.prompt(&request.name) else {
            return Err(ErrorData::invalid_params(
                format!("unknown prompt '{}'", crate::text::echo(&request.name)),
                None,
            ));
        };
        let caller = caller(&context);
        self.check_prompt(plugin, prompt, &caller)
            .map_err(|d| denied(&d))?;
        let mut arguments = Vec::new();
        for (name, value) in request.arguments.unwrap_or_default() {
            if !prompt.arguments.iter().any(|a| a.name == name) {
                let known: Vec<&str> = prompt.arguments.iter().map(|a| a.name.as_str()).collect();
                return Err(ErrorData::invalid_params(
                    format!(
                        "prompt '{}' has no argument '{}' (it takes: {})",
                        prompt.name,
                        crate::text::echo(&name),
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                    None,
                ));
            }
            let Value::String(value) = value else {
                return Err(ErrorData::invalid_params(
                    format!(
                        "prompt argument '{}' must be a string",
                        crate::text::echo(&name)
                    ),
                    None,
                ));
            };
            arguments.push((name, value));
        }
        if let Some(missing) = prompt
            .arguments
            .iter()
            .find(|a| a.required && !arguments.iter().any(|(n, _)| *n == a.name))
        {
            return Err(ErrorData::invalid_params(
                format!("prompt '{}' needs argument '{}'", prompt.name, missing.name),
                None,
            ));
        }
        let request_id = request_id(&context);
        let caller = caller.for_plugin();
        let call_context = mcp::CallContext {
            request_id: request_id.to_string(),
            principal: caller.as_ref().map(|c| c.json.clone()),
        };
        let spec = CallSpec::new(request_id, prompt.name.as_str()).caller(caller);
        let outcome = plugin
            .call(&MCP, spec, async |mcp, store, instance| {
                let guest = mcp.load(&mut *store, &instance)?;
                guest
                    .call_get_prompt(store, &prompt.name, &arguments, &call_context)
                    .await
            })
            .await;
        let result = match outcome {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => {
                return Err(match e.code {
                    types::ErrorCode::BadRequest
                    | types::ErrorCode::NotFound
                    | types::ErrorCode::Unprocessable => ErrorData::invalid_params(e.message, None),
                    _ => ErrorData::internal_error(e.message, None),
                });
            }
            Err(e) => {
                return Err(ErrorData::internal_error(
                    format!(
                        "plugin '{}' {}",
                        plugin.manifest.name,
                        e.for_client(plugin.verbose_errors)
                    ),
                    None,
                ));
            }
        };
        let mut messages = Vec::with_capacity(result.messages.len());
        for message in result.messages {
            let role = match message.role {
                mcp::PromptRole::User => Role::User,
                mcp::PromptRole::Assistant => Role::Assistant,
            };
            let content = content_block(message.content).map_err(|e| {
                ErrorData::internal_error(
                    format!(
                        "plugin '{}' returned a bad prompt message: {e}",
                        plugin.manifest.name
                    ),
                    None,
                )
            })?;
            messages.push(PromptMessage::new(role, content));
        }
        let mut rendered = GetPromptResult::new(messages);
        rendered.description = result.description;
        Ok(rendered.into())
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        *self.session.level.lock().unwrap_or_else(|p| p.into_inner()) = request.level;
        Ok(())
    }

    /// Session-based clients hear about list changes on their standing
    /// event stream, from the moment they finished initializing.
    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let task = tokio::spawn(follow_changes(
            self.registry.clone(),
            ListChangeSink::Session(context.peer),
        ));
        let mut follower = self
            .session
            .follower
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(previous) = follower.replace(task.abort_handle()) {
            previous.abort();
        }
    }

    /// Stateless (2026-07-28) clients ask for list changes with
    /// `subscriptions/listen`.
    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let mut accepted = SubscriptionFilter::default();
        accepted.tools_list_changed = requested.tools_list_changed;
        accepted.prompts_list_changed = requested.prompts_list_changed;
        Some(accepted)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let follow = follow_changes(
            self.registry.clone(),
            ListChangeSink::Subscription(context.sink().clone()),
        );
        tokio::select! {
            () = context.cancelled() => {}
            () = follow => {}
        }
        Ok(())
    }
}

/// Where list-change notifications go.
enum ListChangeSink {
    Session(Peer<RoleServer>),
    Subscription(rmcp::service::SubscriptionSink),
}

impl ListChangeSink {
    /// False once the client is gone.
    async fn tools_changed(&self) -> bool {
        match self {
            ListChangeSink::Session(peer) => peer.notify_tool_list_changed().await.is_ok(),
            ListChangeSink::Subscription(sink) => sink.notify_tool_list_changed().await.is_ok(),
        }
    }

    async fn prompts_changed(&self) -> bool {
        match self {
            ListChangeSink::Session(peer) => peer.notify_prompt_list_changed().await.is_ok(),
            ListChangeSink::Subscription(sink) => sink.notify_prompt_list_changed().await.is_ok(),
        }
    }
}

/// Announces every change of the tool or prompt list until the client is
/// gone. A reload that changes neither list (a route, a GraphQL field, a
/// new version with the same tools) stays silent.
async fn follow_changes(registry: Arc<Registry>, sink: ListChangeSink) {
    let mut changes = registry.changes();
    let snapshot = registry.snapshot();
    let mut tools = snapshot.mcp.tool_list.clone();
    let mut prompts = snapshot.mcp.prompt_list.clone();
    drop(snapshot);
    while changes.changed().await.is_ok() {
        let snapshot = registry.snapshot();
        if snapshot.mcp.tool_list != tools {
            tools = snapshot.mcp.tool_list.clone();
            if !sink.tools_changed().await {
                return;
            }
        }
        if snapshot.mcp.prompt_list != prompts {
            prompts = snapshot.mcp.prompt_list.clone();
            if !sink.prompts_changed().await {
                return;
            }
        }
    }
}

/// Who is calling a tool: what `tools/call` needs of the request besides
/// its arguments.
pub(super) struct ToolCaller {
    pub caller: Caller,
    pub request_id: Arc<str>,
    /// The client's `Idempotency-Key`, unchecked.
    pub idempotency_key: Option<String>,
    pub progress: Option<ProgressToken>,
}

/// Where a running call's progress and log messages go: through rmcp's
/// peer, or (the endpoint's own stateless path, `fast`) onto a queue the
/// endpoint answers from.
pub(super) enum Notify {
    Peer(Peer<RoleServer>),
    Queue(mpsc::Sender<ServerJsonRpcMessage>),
}

impl Notify {
    async fn send(&self, notification: ServerNotification) {
        // A client that went away is not the call's problem.
        match self {
            Notify::Peer(peer) => {
                let _ = peer.send_notification(notification).await;
            }
            Notify::Queue(queue) => {
                let _ = queue
                    .send(ServerJsonRpcMessage::notification(notification))
                    .await;
            }
        }
    }
}

/// Sends what a running tool call queued to its client until the call ends.
async fn forward(
    mut queue: mpsc::Receiver<ClientMessage>,
    notify: Notify,
    token: Option<ProgressToken>,
    min_level: LoggingLevel,
    plugin: &str,
) {
    while let Some(message) = queue.recv().await {
        match message {
            ClientMessage::Progress {
                progress,
                total,
                message,
            } => {
                let Some(token) = &token else { continue };
                let mut param = ProgressNotificationParam::new(token.clone(), progress);
                if let Some(total) = total {
                    param = param.with_total(total);
                }
                if let Some(message) = message {
                    param = param.with_message(message);
                }
                notify
                    .send(ServerNotification::ProgressNotification(
                        rmcp::model::ProgressNotification::new(param),
                    ))
                    .await;
            }
            ClientMessage::Log { level, message } => {
                let level = logging_level(level);
                if rank(level) < rank(min_level) {
                    continue;
                }
                let param = LoggingMessageNotificationParam::new(level, Value::String(message))
                    .with_logger(plugin);
                notify
                    .send(ServerNotification::LoggingMessageNotification(
                        rmcp::model::LoggingMessageNotification::new(param),
                    ))
                    .await;
            }
        }
    }
}

fn logging_level(level: crate::runtime::bindings::kiln::plugin::mcp_client::Level) -> LoggingLevel {
    use crate::runtime::bindings::kiln::plugin::mcp_client::Level;
    match level {
        Level::Debug => LoggingLevel::Debug,
        Level::Info => LoggingLevel::Info,
        Level::Notice => LoggingLevel::Notice,
        Level::Warning => LoggingLevel::Warning,
        Level::Error => LoggingLevel::Error,
    }
}

/// RFC 5424 severity order, least severe first.
fn rank(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

/// The HTTP request that carried this call (rmcp puts its parts in the
/// request's extensions).
fn parts(context: &RequestContext<RoleServer>) -> Option<&Parts> {
    context.extensions.get::<Parts>()
}

/// The caller the HTTP auth layer found for this request.
fn caller(context: &RequestContext<RoleServer>) -> Caller {
    parts(context).map(caller_of).unwrap_or_default()
}

pub(super) fn caller_of(parts: &Parts) -> Caller {
    parts
        .extensions
        .get::<Caller>()
        .cloned()
        .unwrap_or_default()
}

/// A refused call: a JSON-RPC error whose data says 401 or 403, like the
/// host's HTTP errors.
fn denied(denied: &Denied) -> ErrorData {
    let status = match denied {
        Denied::Unauthenticated { .. } => 401,
        Denied::Forbidden { .. } => 403,
    };
    ErrorData::invalid_request(
        denied.to_string(),
        Some(serde_json::json!({ "code": denied.code(), "status": status })),
    )
}

/// The engine's request id for the HTTP request that carried this call.
fn request_id(context: &RequestContext<RoleServer>) -> Arc<str> {
    parts(context).map_or_else(crate::request::id::new_id, request_id_of)
}

pub(super) fn request_id_of(parts: &Parts) -> Arc<str> {
    parts
        .extensions
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_else(crate::request::id::new_id)
}

fn idempotency_key(context: &RequestContext<RoleServer>) -> Option<&str> {
    parts(context).and_then(idempotency_key_of)
}

/// The client's `Idempotency-Key` header, if any (one that is not text
/// reads as a key that fails the check).
pub(super) fn idempotency_key_of(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap_or("\u{0}"))
}

/// A tool call billing refused, as an error result the model can read:
/// the message, and the code with the price, account and available
/// amount as structured content.
fn payment_refused(refused: &crate::billing::Refusal) -> CallToolResponse {
    let code = refused.code();
    let mut result = CallToolResult::error(vec![ContentBlock::text(refused.to_string())]);
    let mut data = serde_json::json!({ "code": code });
    if let (Value::Object(details), Some(data)) = (refused.details(), data.as_object_mut()) {
        data.extend(details);
    }
    result.structured_content = Some(data);
    result.into()
}

/// An error result: the tool ran (or was about to) and failed.
fn failed(message: String) -> CallToolResponse {
    CallToolResult::error(vec![ContentBlock::text(message)]).into()
}

/// What the client gets for a finished tool call.
fn tool_outcome(
    plugin: &Plugin,
    tool: &Tool,
    outcome: Result<Result<mcp::ToolResult, types::Error>, CallError>,
) -> CallToolResult {
    let error = |message: String| CallToolResult::error(vec![ContentBlock::text(message)]);
    let name = &plugin.manifest.name;
    let result = match outcome {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => return error(e.message),
        Err(e) => {
            return error(format!(
                "tool '{}' failed: plugin '{name}' {}",
                tool.name,
                e.for_client(plugin.verbose_errors)
            ));
        }
    };
    let bad_output = |what: String| {
        tracing::warn!(plugin = %name, tool = %tool.name, "{what}");
        error(format!(
            "tool '{}' failed: plugin '{name}' returned {what}",
            tool.name
        ))
    };
    let mut content = Vec::with_capacity(result.content.len() + 1);
    for block in result.content {
        match content_block(block) {
            Ok(block) => content.push(block),
            Err(e) => return bad_output(e),
        }
    }
    let structured = match result
        .structured
        .as_deref()
        .map(serde_json::from_str::<Value>)
    {
        None => None,
        Some(Ok(value @ Value::Object(_))) => Some(value),
        Some(Ok(_)) => return bad_output("structured content that is not a JSON object".into()),
        Some(Err(e)) => return bad_output(format!("structured content that is not JSON: {e}")),
    };
    if !result.is_error && tool.output_schema.is_some() {
        let Some(value) = &structured else {
            return bad_output("no structured content, which its output schema requires".into());
        };
        if let Some(errors) = decl::output_errors(tool, value) {
            return bad_output(format!(
                "structured content that does not match its output schema: {errors}"
            ));
        }
    }
    // Clients that predate structured content read the text block.
    if let Some(value) = &structured
        && content.is_empty()
    {
        content.push(ContentBlock::text(value.to_string()));
    }
    let mut out = if result.is_error {
        CallToolResult::error(content)
    } else {
        CallToolResult::success(content)
    };
    out.structured_content = structured;
    out
}

/// A content block from a plugin, checked.
fn content_block(content: mcp::Content) -> Result<ContentBlock, String> {
    let b64 = |data: &[u8]| base64::engine::general_purpose::STANDARD.encode(data);
    Ok(match content {
        mcp::Content::Text(text) => ContentBlock::text(text),
        mcp::Content::Image(media) => {
            check_mime("an image", &media.mime_type, "image/")?;
            ContentBlock::image(b64(&media.data), media.mime_type)
        }
        mcp::Content::Audio(media) => {
            check_mime("an audio clip", &media.mime_type, "audio/")?;
            ContentBlock::audio(b64(&media.data), media.mime_type)
        }
        mcp::Content::Embedded(resource) => {
            check_uri(&resource.uri)?;
            let contents = match resource.body {
                mcp::ResourceBody::Text(text) => ResourceContents::TextResourceContents {
                    uri: resource.uri,
                    mime_type: resource.mime_type,
                    text,
                    meta: None,
                },
                mcp::ResourceBody::Blob(data) => ResourceContents::BlobResourceContents {
                    uri: resource.uri,
                    mime_type: resource.mime_type,
                    blob: b64(&data),
                    meta: None,
                },
            };
            ContentBlock::resource(contents)
        }
        mcp::Content::Link(link) => {
            check_uri(&link.uri)?;
            let mut resource = rmcp::model::Resource::new(link.uri, link.name);
            if let Some(description) = link.description {
                resource = resource.with_description(description);
            }
            if let Some(mime_type) = link.mime_type {
                resource = resource.with_mime_type(mime_type);
            }
            ContentBlock::resource_link(resource)
        }
    })
}

fn check_mime(what: &str, mime_type: &str, prefix: &str) -> Result<(), String> {
    let valid = mime_type.starts_with(prefix)
        && mime_type.len() > prefix.len()
        && mime_type.len() <= 128
        && !mime_type
            .chars()
            .any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{what} with MIME type {mime_type:?}; it must start with {prefix:?}"
        ))
    }
}

fn check_uri(uri: &str) -> Result<(), String> {
    let scheme = uri.split_once(':').map(|(s, _)| s).unwrap_or("");
    let valid_scheme = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if valid_scheme && uri.len() <= 2048 && !uri.chars().any(char::is_whitespace) {
        Ok(())
    } else {
        Err(format!(
            "a resource URI {:?} that is not an absolute URI",
            crate::text::cut(uri, 80)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_checked_and_encoded() {
        let image = content_block(mcp::Content::Image(mcp::Media {
            data: vec![1, 2, 3],
            mime_type: "image/png".into(),
        }))
        .unwrap();
        let json = serde_json::to_value(&image).unwrap();
        assert_eq!(json["type"], "image");
        assert_eq!(json["data"], "AQID");
        assert_eq!(json["mimeType"], "image/png");

        let e = content_block(mcp::Content::Audio(mcp::Media {
            data: vec![],
            mime_type: "image/png".into(),
        }))
        .unwrap_err();
        assert!(e.contains("must start with \"audio/\""), "{e}");

        let e = content_block(mcp::Content::Embedded(mcp::EmbeddedResource {
            uri: "no scheme".into(),
            mime_type: None,
            body: mcp::ResourceBody::Text("x".into()),
        }))
        .unwrap_err();
        assert!(e.contains("not an absolute URI"), "{e}");

        let resource = content_block(mcp::Content::Embedded(mcp::EmbeddedResource {
            uri: "test://r".into(),
            mime_type: Some("text/plain".into()),
            body: mcp::ResourceBody::Text("hello".into()),
        }))
        .unwrap();
        let json = serde_json::to_value(&resource).unwrap();
        assert_eq!(json["resource"]["text"], "hello");
        assert_eq!(json["resource"]["uri"], "test://r");
    }

    #[test]
    fn levels_rank_by_severity() {
        assert!(rank(LoggingLevel::Debug) < rank(LoggingLevel::Info));
        assert!(rank(LoggingLevel::Error) > rank(LoggingLevel::Warning));
    }
}
