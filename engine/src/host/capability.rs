//! The seam every host capability plugs into. A capability (kv, sql, log,
//! runtime-info, …) is one unit that owns, for its WIT interface:
//!
//! - building itself from the engine's shared services, once at start
//!   ([`Capability::new`]);
//! - linking its interface, once ([`Capability::link`]);
//! - deciding what one plugin may reach, once per load
//!   ([`Capability::scope`]): a plugin's authority is fixed there, never
//!   per call, and never by what the plugin says about itself beyond the
//!   checked manifest;
//! - its own per-call state, built cheaply at the start of every call
//!   ([`Capability::begin`]).
//!
//! A host implementation sees only its own part of the call state
//! ([`View`], through wasmtime's `HasData` narrowing), not the whole
//! [`CallState`]. The list of capabilities is the one `capabilities!` line
//! each in `host/mod.rs`.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{HasData, Linker};

use super::HostServices;
use crate::config::{Config, PluginSettings};
use crate::host::mcp_client::ClientLink;
use crate::host::outbound::OutboundPolicy;
use crate::runtime::state::CallState;

pub trait Capability: Sized + Send + Sync + 'static {
    /// What one plugin may reach, decided at load.
    type Scope: Send + Sync + 'static;
    /// This capability's part of one call's state, new for every call.
    type Call: Send + 'static;

    /// Builds the capability from the engine's shared services and config
    /// (once, at start). An error stops the engine with its message.
    fn new(services: &HostServices, config: &Config) -> Result<Self, String>;

    /// Adds the capability's WIT interface to `linker` (once, at start).
    /// Implementations link with [`Narrow<Self>`] and [`view`].
    fn link(linker: &mut Linker<CallState>) -> wasmtime::Result<()>;

    /// What `plugin` may reach. Called for the calls that describe a plugin
    /// (`plugin.describing`: data interfaces answer "not during
    /// describe()") and again once its manifest is checked. An error
    /// refuses the plugin with that message.
    fn scope(&self, plugin: &PluginFacts<'_>) -> Result<Self::Scope, String>;

    /// This capability's state for a call that is starting.
    fn begin(scope: &Self::Scope, start: &mut CallStart<'_>) -> Self::Call;

    /// Lets go of what the finished call held before a warm instance waits
    /// in its pool.
    fn end(_call: &mut Self::Call) {}
}

/// What the host knows about a plugin when it decides its scopes.
pub struct PluginFacts<'a> {
    /// The manifest name; the file stem while describing.
    pub name: &'a str,
    /// The manifest version; empty while describing.
    pub version: &'a str,
    /// The plugin file's stem.
    pub file: &'a str,
    pub describing: bool,
    /// Its resolved settings (operator's config over its own file).
    pub settings: &'a PluginSettings,
    /// Its checked `[outbound] allowed_hosts`.
    pub outbound: &'a Arc<OutboundPolicy>,
}

impl PluginFacts<'_> {
    /// A data capability's service for a plugin being served; none while
    /// it is described, so its imports answer "not during describe()".
    pub fn unless_describing<T: Clone>(&self, service: &Option<T>) -> Option<T> {
        service.clone().filter(|_| !self.describing)
    }
}

/// A data capability's scope in this call, or the plugin-facing error
/// when there is none (while the plugin is described): `what` names the
/// service, e.g. "the key-value store".
pub fn scope_in_call<T: Clone>(
    scope: &Option<T>,
    what: &str,
) -> Result<T, crate::runtime::bindings::types::Error> {
    scope
        .clone()
        .ok_or_else(|| crate::runtime::bindings::types::Error {
            code: crate::runtime::bindings::types::ErrorCode::Unavailable,
            message: format!("{what} is not available here (not during describe())"),
        })
}

/// What every capability may read about the call it serves.
#[derive(Debug, Clone)]
pub struct CallMeta {
    /// The plugin's manifest name (file stem while describing).
    pub plugin: Arc<str>,
    pub request_id: Arc<str>,
    /// The caller as JSON (`kiln:plugin/identity`); none when anonymous.
    pub caller: Option<String>,
    /// When the epoch callback interrupts the guest.
    pub deadline: Instant,
}

/// What a front door hands the capabilities of one call, beyond its meta.
#[derive(Default)]
pub struct Handoff {
    /// The MCP client of a tool call (taken by `mcp-client`).
    pub client: Option<ClientLink>,
    /// The hold and charges of a priced call (taken by `billing`).
    pub meter: Option<std::sync::Arc<crate::billing::Meter>>,
}

/// What the capabilities of one call start from.
pub struct CallStart<'a> {
    pub meta: &'a CallMeta,
    pub handoff: Handoff,
}

/// A capability's part of the call state: all a host implementation sees.
pub struct View<'a, C: Capability> {
    pub scope: &'a C::Scope,
    pub call: &'a mut C::Call,
    pub meta: &'a CallMeta,
}

/// `HasData` for capability `C`: narrows the linker's `CallState` to
/// `View<C>`.
pub struct Narrow<C>(PhantomData<C>);

impl<C: Capability> HasData for Narrow<C> {
    type Data<'a> = View<'a, C>;
}

/// Where a call state keeps capability `C`'s parts (generated by
/// `capabilities!`).
pub trait Holds<C: Capability> {
    fn view(&mut self) -> View<'_, C>;
}

/// The narrowing function capabilities pass to `add_to_linker`.
pub fn view<C: Capability>(state: &mut CallState) -> View<'_, C>
where
    CallState: Holds<C>,
{
    <CallState as Holds<C>>::view(state)
}

/// Declares the engine's capabilities: one `module::Type` line each, the
/// module being the capability's file in `host/`. Declares the modules and
/// generates the set of capabilities (built once), the per-plugin scopes,
/// the per-call parts, and where each capability finds them in the call
/// state.
macro_rules! capabilities {
    ($($field:ident :: $name:ident),* $(,)?) => {
        $(pub mod $field;)*
        $crate::host::capability::capabilities!(@generate $($field: $field::$name),*);
    };
    (@generate $($field:ident: $ty:ty),*) => {
        /// Every capability, built once at start.
        pub struct Capabilities {
            $(pub $field: $ty,)*
        }

        /// What one plugin may reach, capability by capability.
        pub struct Scopes {
            $(pub $field: <$ty as $crate::host::capability::Capability>::Scope,)*
        }

        /// Each capability's part of one call.
        pub struct Calls {
            $(pub $field: <$ty as $crate::host::capability::Capability>::Call,)*
        }

        impl Capabilities {
            pub fn new(
                services: &HostServices,
                config: &$crate::config::Config,
            ) -> Result<Self, String> {
                use $crate::host::capability::Capability;
                Ok(Capabilities {
                    $($field: <$ty>::new(services, config)?,)*
                })
            }

            pub fn link(linker: &mut wasmtime::component::Linker<CallState>) -> wasmtime::Result<()> {
                use $crate::host::capability::Capability;
                $(<$ty>::link(linker)?;)*
                Ok(())
            }

            pub fn scopes(
                &self,
                plugin: &$crate::host::capability::PluginFacts<'_>,
            ) -> Result<Scopes, String> {
                use $crate::host::capability::Capability;
                Ok(Scopes {
                    $($field: self.$field.scope(plugin)?,)*
                })
            }
        }

        impl Scopes {
            pub fn begin(&self, start: &mut $crate::host::capability::CallStart<'_>) -> Calls {
                use $crate::host::capability::Capability;
                Calls {
                    $($field: <$ty>::begin(&self.$field, start),)*
                }
            }
        }

        impl Calls {
            pub fn end(&mut self) {
                use $crate::host::capability::Capability;
                $(<$ty>::end(&mut self.$field);)*
            }
        }

        $(
            impl $crate::host::capability::Holds<$ty> for CallState {
                fn view(&mut self) -> $crate::host::capability::View<'_, $ty> {
                    let (scopes, calls, meta) = self.parts();
                    $crate::host::capability::View {
                        scope: &scopes.$field,
                        call: &mut calls.$field,
                        meta,
                    }
                }
            }
        )*
    };
}
pub(crate) use capabilities;
