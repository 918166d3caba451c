//! Kiln guest SDK for Rust plugins.
//!
//! A plugin is a type that implements [`Plugin`] and lists its routes; the
//! [`export_plugin!`] macro wires it to the WIT exports:
//!
//! ```ignore
//! use kiln_sdk::{Plugin, Request, Response, Result, Router};
//!
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn routes() -> Router {
//!         Router::new().get("/hello/{name}", hello)
//!     }
//! }
//!
//! fn hello(req: Request) -> Result<Response> {
//!     let name = req.param("name").unwrap_or("world");
//!     Response::json(&serde_json::json!({ "message": format!("Hello, {name}!") }))
//! }
//!
//! kiln_sdk::export_plugin!(Hello);
//! ```

// Lets generated code name this crate by its public path from inside it too.
extern crate self as kiln_sdk;

mod args;
mod error;
mod request;
mod response;
mod router;

pub mod auth;
pub mod billing;
pub mod cache;
pub mod config;
pub mod graphql;
pub mod http;
pub mod identity;
pub mod kv;
pub mod log;
pub mod mcp;
pub mod pubsub;
pub mod runtime;
pub mod sql;

pub use error::{Error, ErrorCode, Result};
pub use request::Request;
pub use response::Response;
pub use router::{Handler, Method, Router};

/// Generated bindings for the `kiln:plugin/full-plugin` world. Plugins rarely
/// need them directly; they are public for the [`export_plugin!`] macro and for
/// interfaces the SDK does not wrap yet.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "kiln:plugin/full-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_full_plugin",
        default_bindings_module: "::kiln_sdk::bindings",
        runtime_path: "::kiln_sdk::__wit_bindgen_rt",
    });
}

#[doc(hidden)]
pub use wit_bindgen::rt as __wit_bindgen_rt;

/// What a plugin provides. The name, version and description in the manifest
/// come from the plugin crate's `Cargo.toml` through [`export_plugin!`].
pub trait Plugin {
    /// The routes the plugin serves. Called when the plugin is described and
    /// on every request (it is cheap: a list of function pointers).
    fn routes() -> Router {
        Router::new()
    }

    /// The plugin's GraphQL fields: SDL and resolvers. None by default.
    fn graphql() -> graphql::Graphql {
        graphql::Graphql::none()
    }

    /// The plugin's MCP tools and prompts. None by default.
    fn mcp() -> mcp::Mcp {
        mcp::Mcp::new()
    }

    /// The plugin's auth providers. None by default.
    fn auth() -> auth::Providers {
        auth::Providers::none()
    }
}

#[doc(hidden)]
pub mod __export {
    //! Glue used by [`export_plugin!`](crate::export_plugin); not a stable API.
    use crate::bindings::kiln::plugin::types;
    use crate::{Plugin, Request};

    pub fn describe<P: Plugin>(name: &str, version: &str, description: &str) -> types::Manifest {
        types::Manifest {
            name: name.to_string(),
            version: version.to_string(),
            description: (!description.is_empty()).then(|| description.to_string()),
            routes: P::routes().manifest_routes(),
        }
    }

    pub fn route_prices<P: Plugin>()
    -> Vec<crate::bindings::exports::kiln::plugin::http_prices::RoutePrice> {
        P::routes()
            .prices()
            .into_iter()
            .map(|(handler, micros)| {
                crate::bindings::exports::kiln::plugin::http_prices::RoutePrice { handler, micros }
            })
            .collect()
    }

    pub fn schema<P: Plugin>() -> String {
        P::graphql().sdl().to_string()
    }

    pub fn resolve<P: Plugin>(
        request: crate::bindings::exports::kiln::plugin::graphql::ResolveRequest,
    ) -> Result<String, types::Error> {
        let request = crate::graphql::Resolve::try_from(request)?;
        let Some(resolver) = P::graphql().find(&request.parent_type, &request.field) else {
            return Err(crate::Error::not_found(format!(
                "this plugin has no resolver for {}.{}",
                request.parent_type, request.field
            ))
            .into());
        };
        let value = resolver(request)?;
        serde_json::to_string(&value).map_err(|e| crate::Error::from(e).into())
    }

    pub fn handle<P: Plugin>(
        handler: String,
        request: types::HttpRequest,
    ) -> Result<types::HttpResponse, types::Error> {
        let router = P::routes();
        let Some(route) = router.find(&handler) else {
            return Err(crate::Error::not_found(format!(
                "this plugin has no handler named '{handler}'"
            ))
            .into());
        };
        (route.handler)(Request::from(request))
            .map(Into::into)
            .map_err(Into::into)
    }
}

/// Exports a type implementing [`Plugin`] as the plugin's WIT exports.
///
/// The manifest name is the crate name, the version the crate version, and the
/// description the crate description from `Cargo.toml`.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        struct __KilnExports;

        impl $crate::bindings::exports::kiln::plugin::plugin::Guest for __KilnExports {
            fn describe() -> $crate::bindings::kiln::plugin::types::Manifest {
                $crate::__export::describe::<$plugin>(
                    env!("CARGO_PKG_NAME"),
                    env!("CARGO_PKG_VERSION"),
                    env!("CARGO_PKG_DESCRIPTION"),
                )
            }
        }

        impl $crate::bindings::exports::kiln::plugin::http_handler::Guest for __KilnExports {
            fn handle(
                handler: ::std::string::String,
                request: $crate::bindings::kiln::plugin::types::HttpRequest,
            ) -> ::std::result::Result<
                $crate::bindings::kiln::plugin::types::HttpResponse,
                $crate::bindings::kiln::plugin::types::Error,
            > {
                $crate::__export::handle::<$plugin>(handler, request)
            }
        }

        impl $crate::bindings::exports::kiln::plugin::http_prices::Guest for __KilnExports {
            fn prices() -> ::std::vec::Vec<$crate::bindings::exports::kiln::plugin::http_prices::RoutePrice> {
                $crate::__export::route_prices::<$plugin>()
            }
        }

        impl $crate::bindings::exports::kiln::plugin::auth_provider::Guest for __KilnExports {
            fn providers() -> ::std::vec::Vec<::std::string::String> {
                $crate::auth::__export::providers::<$plugin>()
            }

            fn authenticate(
                provider: ::std::string::String,
                request: $crate::bindings::exports::kiln::plugin::auth_provider::RequestHead,
            ) -> ::std::result::Result<
                ::std::option::Option<$crate::bindings::exports::kiln::plugin::auth_provider::Verified>,
                $crate::bindings::kiln::plugin::types::Error,
            > {
                $crate::auth::__export::authenticate::<$plugin>(provider, request)
            }
        }

        impl $crate::bindings::exports::kiln::plugin::graphql::Guest for __KilnExports {
            fn schema() -> ::std::string::String {
                $crate::__export::schema::<$plugin>()
            }

            fn resolve(
                request: $crate::bindings::exports::kiln::plugin::graphql::ResolveRequest,
            ) -> ::std::result::Result<
                ::std::string::String,
                $crate::bindings::kiln::plugin::types::Error,
            > {
                $crate::__export::resolve::<$plugin>(request)
            }
        }

        impl $crate::bindings::exports::kiln::plugin::mcp::Guest for __KilnExports {
            fn tools() -> ::std::vec::Vec<$crate::bindings::exports::kiln::plugin::mcp::Tool> {
                $crate::mcp::__export::tools::<$plugin>()
            }

            fn prompts() -> ::std::vec::Vec<$crate::bindings::exports::kiln::plugin::mcp::Prompt> {
                $crate::mcp::__export::prompts::<$plugin>()
            }

            fn call_tool(
                name: ::std::string::String,
                arguments: ::std::string::String,
                context: $crate::bindings::exports::kiln::plugin::mcp::CallContext,
            ) -> ::std::result::Result<
                $crate::bindings::exports::kiln::plugin::mcp::ToolResult,
                $crate::bindings::kiln::plugin::types::Error,
            > {
                $crate::mcp::__export::call_tool::<$plugin>(name, arguments, context)
            }

            fn get_prompt(
                name: ::std::string::String,
                arguments: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                context: $crate::bindings::exports::kiln::plugin::mcp::CallContext,
            ) -> ::std::result::Result<
                $crate::bindings::exports::kiln::plugin::mcp::PromptResult,
                $crate::bindings::kiln::plugin::types::Error,
            > {
                $crate::mcp::__export::get_prompt::<$plugin>(name, arguments, context)
            }
        }

        $crate::bindings::__export_full_plugin!(__KilnExports with_types_in $crate::bindings);
    };
}
