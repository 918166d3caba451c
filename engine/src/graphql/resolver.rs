//! How the GraphQL front door calls a plugin: a root or extension field
//! becomes one `kiln:plugin/graphql.resolve` call on the engine's one call
//! path, and whatever comes back becomes a value or a field error in
//! GraphQL terms.

use futures_util::future::BoxFuture;

use super::schema::{FieldError, ResolveRequest, Resolver};
use crate::runtime::bindings::{graphql, types};
use crate::runtime::call::GRAPHQL;
use crate::runtime::{CallError, CallSpec, Plugin};

impl Resolver for Plugin {
    fn resolve(
        &self,
        request: ResolveRequest,
    ) -> BoxFuture<'_, Result<serde_json::Value, FieldError>> {
        Box::pin(async move {
            let caller = request.caller.for_plugin();
            let at = format!("{}.{}", request.parent_type, request.field);
            let wire = graphql::ResolveRequest {
                parent_type: request.parent_type,
                field: request.field,
                arguments: request.arguments.to_string(),
                parent: request.parent.map(|p| p.to_string()),
                context: graphql::ResolveContext {
                    request_id: request.request_id.to_string(),
                    operation: request.operation.to_string(),
                    principal: caller.as_ref().map(|c| c.json.clone()),
                },
            };
            let spec = CallSpec::new(request.request_id, at.as_str())
                .caller(caller)
                .meter(request.meter);
            let outcome = self
                .call(&GRAPHQL, spec, async |graphql, store, instance| {
                    let guest = graphql.load(&mut *store, &instance)?;
                    guest.call_resolve(store, &wire).await
                })
                .await;
            match outcome {
                Ok(Ok(json)) => serde_json::from_str(&json).map_err(|e| FieldError {
                    code: "BAD_PLUGIN_OUTPUT",
                    message: format!(
                        "plugin '{}' returned invalid JSON for {at}: {e}",
                        self.manifest.name
                    ),
                }),
                Ok(Err(e)) => Err(FieldError {
                    code: graphql_code(e.code),
                    message: e.message,
                }),
                Err(e) => Err(FieldError {
                    code: match e {
                        CallError::Busy(_) => "UNAVAILABLE",
                        CallError::Timeout { .. } => "TIMEOUT",
                        _ => "PLUGIN_FAILED",
                    },
                    message: format!(
                        "plugin '{}' {}",
                        self.manifest.name,
                        e.for_client(self.verbose_errors)
                    ),
                }),
            }
        })
    }
}

/// `extensions.code` for a plugin's error code.
fn graphql_code(code: types::ErrorCode) -> &'static str {
    use types::ErrorCode::*;
    match code {
        BadRequest => "BAD_REQUEST",
        Unauthorized => "UNAUTHENTICATED",
        Forbidden => "FORBIDDEN",
        NotFound => "NOT_FOUND",
        Conflict => "CONFLICT",
        Unprocessable => "UNPROCESSABLE",
        TooManyRequests => "TOO_MANY_REQUESTS",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
    }
}
