//! Host-side bindings generated from `wit/`. Generated code stays generated;
//! behaviour lives in `crate::host` (imports) and `super::plugin` (exports).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "kiln:plugin/full-plugin",
    // Guest exports run on fibers so a busy guest can yield to tokio at each
    // epoch tick. Imports that reach the database are async; the rest are
    // quick and synchronous.
    imports: {
        "kiln:plugin/kv": async | trappable,
        "kiln:plugin/cache": async | trappable,
        "kiln:plugin/sql": async | trappable,
        "kiln:plugin/billing": async | trappable,
        default: trappable,
    },
    exports: { default: async },
});

pub use self::exports::kiln::plugin::auth_provider;
pub use self::exports::kiln::plugin::auth_provider::GuestIndices as AuthProviderIndices;
pub use self::exports::kiln::plugin::graphql;
pub use self::exports::kiln::plugin::graphql::GuestIndices as GraphqlIndices;
pub use self::exports::kiln::plugin::http_handler::GuestIndices as HttpHandlerIndices;
pub use self::exports::kiln::plugin::http_prices::GuestIndices as HttpPricesIndices;
pub use self::exports::kiln::plugin::mcp;
pub use self::exports::kiln::plugin::mcp::GuestIndices as McpIndices;
pub use self::exports::kiln::plugin::plugin::GuestIndices as PluginIndices;
pub use self::kiln::plugin::types;

impl types::Method {
    /// The WIT method of an HTTP method (`Other` keeps extension methods).
    pub fn from_http(m: &http::Method) -> Self {
        use http::Method;
        match *m {
            Method::GET => Self::Get,
            Method::POST => Self::Post,
            Method::PUT => Self::Put,
            Method::PATCH => Self::Patch,
            Method::DELETE => Self::Delete,
            Method::HEAD => Self::Head,
            Method::OPTIONS => Self::Options,
            ref other => Self::Other(other.as_str().to_string()),
        }
    }
}
