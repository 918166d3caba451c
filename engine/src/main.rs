//! The `kiln` command: a thin layer over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use kiln::config::Config;

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "A programmable API engine for WebAssembly component plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the plugins in a directory, reloading them when their files change.
    Serve {
        /// Directory of *.wasm plugins (default: plugins; env KILN_PLUGINS_DIR).
        #[arg(long, value_name = "DIR")]
        plugins: Option<PathBuf>,
        /// Address to listen on (default: 127.0.0.1:8080; env KILN_LISTEN).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Engine config file (TOML). See docs/configuration.md.
        #[arg(long, value_name = "FILE", env = "KILN_CONFIG")]
        config: Option<PathBuf>,
        /// For a laptop: loopback only; everything public unless the config
        /// has [access]; an admin token for this run, printed; plugin errors
        /// in full in answers.
        #[arg(long)]
        dev: bool,
    },
    /// Apply the engine's database migrations and exit (serve does this too).
    Migrate {
        /// Engine config file (TOML); the database is `[database] url` or KILN_DATABASE_URL.
        #[arg(long, value_name = "FILE", env = "KILN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Manage API keys in the engine's database.
    Keys {
        /// Engine config file (TOML); the database is `[database] url` or KILN_DATABASE_URL.
        #[arg(long, value_name = "FILE", env = "KILN_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: KeysAction,
    },
    /// The billing ledger: credit and debit accounts, read balances and entries, settle.
    Billing {
        /// Engine config file (TOML); the database is `[database] url` or KILN_DATABASE_URL.
        #[arg(long, value_name = "FILE", env = "KILN_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: BillingAction,
    },
    /// Plugin names and the files that own them (a name owns its kv, cache and SQL data).
    Plugins {
        /// Engine config file (TOML); the database is `[database] url` or KILN_DATABASE_URL.
        #[arg(long, value_name = "FILE", env = "KILN_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: PluginsAction,
    },
    /// Create a new plugin (a Rust crate, or a JavaScript package with --lang js) that builds as is.
    New {
        /// Plugin name: a-z, 0-9, '-' and '_'.
        name: String,
        /// Where to create it (default: ./NAME).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Path to the Kiln guest SDK (default: KILN_SDK_PATH, else the SDK this kiln was built from).
        #[arg(long, value_name = "PATH")]
        sdk: Option<PathBuf>,
        /// The plugin's language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: kiln::cli::scaffold::Lang,
    },
    /// Build a plugin (Rust crate or JavaScript package) to a .wasm component and put it in the plugin directory.
    Build {
        /// The plugin folder (default: the current directory).
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Where to put the .wasm (default: KILN_PLUGINS_DIR, else the engine
        /// config's plugins_dir, else plugins).
        #[arg(long, value_name = "DIR")]
        plugins: Option<PathBuf>,
        /// Engine config file (TOML) whose plugins_dir receives the .wasm.
        #[arg(long, value_name = "FILE", env = "KILN_CONFIG")]
        config: Option<PathBuf>,
        /// Rust: build without optimisations (faster to build, slower to run).
        /// JavaScript: use the JS engine's debug build, which keeps function
        /// names for crash backtraces.
        #[arg(long)]
        debug: bool,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create a key and print it (once; only its hash is kept).
    Create {
        /// A unique name: who or what uses the key (e.g. ci).
        #[arg(long)]
        name: String,
        /// Comma-separated roles (e.g. reader,writer; admin for the admin API).
        #[arg(long, value_delimiter = ',', default_value = "")]
        roles: Vec<String>,
    },
    /// List keys (ids, names, roles, state; never the keys).
    List,
    /// Revoke a key by id (kk_...) or name.
    Revoke { id_or_name: String },
}

#[derive(Subcommand)]
enum BillingAction {
    /// Add micros (1000000 = $1) to an account, creating it (key:NAME, jwt:SUB, provider:NAME:SUB).
    Credit {
        account: String,
        micros: u64,
        #[arg(long)]
        reason: Option<String>,
        /// Makes a retried command a no-op: the movement is made once
        /// under this key.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Take micros from an account (never below what it has available).
    Debit {
        account: String,
        micros: u64,
        #[arg(long)]
        reason: Option<String>,
        /// Makes a retried command a no-op: the movement is made once
        /// under this key.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// An account's balance, pending charges, holds and what it may spend.
    Balance { account: String },
    /// An account's newest entries.
    Ledger {
        account: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Deduct every pending charge from its balance now (exactly once).
    Settle,
}

#[derive(Subcommand)]
enum PluginsAction {
    /// List plugin names with the file that owns each.
    Names,
    /// Release a name so that another file may declare it (and reach its data).
    Release { name: String },
}

fn main() -> ExitCode {
    init_logging();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            plugins,
            listen,
            config,
            dev,
        } => {
            let mut cfg = kiln::sections::load(config.as_deref(), |k| std::env::var(k).ok())?;
            if let Some(dir) = plugins {
                cfg.plugins_dir = dir;
            }
            if let Some(addr) = listen {
                cfg.listen = addr.parse().map_err(|e| {
                    anyhow::anyhow!("--listen {addr:?}: {e}; expected e.g. 127.0.0.1:8080")
                })?;
            }
            if dev {
                let done = kiln::cli::dev::apply(&mut cfg, config.as_deref())
                    .map_err(anyhow::Error::msg)?;
                eprint!("{}", kiln::cli::dev::banner(&cfg, &done));
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let served =
                runtime.block_on(kiln::server::serve(cfg, kiln::server::shutdown_signal()));
            // Connections cut when the shutdown grace period ran out still
            // have tasks here; dropping the runtime would wait for any
            // blocking work among them without bound.
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            served
        }
        Command::Migrate { config } => on_database(config, |cfg| async move {
            let db = kiln::server::open_database(&cfg).await?;
            db.close().await;
            println!("database is up to date");
            Ok(())
        }),
        Command::Keys { config, action } => on_database(config, |cfg| async move {
            match action {
                KeysAction::Create { name, roles } => {
                    let roles: Vec<String> = roles.into_iter().filter(|r| !r.is_empty()).collect();
                    kiln::cli::keys::create(&cfg, &name, &roles).await
                }
                KeysAction::List => kiln::cli::keys::list(&cfg).await,
                KeysAction::Revoke { id_or_name } => {
                    kiln::cli::keys::revoke(&cfg, &id_or_name).await
                }
            }
        }),
        Command::Billing { config, action } => on_database(config, |cfg| async move {
            use kiln::cli::billing;
            match action {
                BillingAction::Credit {
                    account,
                    micros,
                    reason,
                    idempotency_key,
                } => {
                    let movement = billing::Movement {
                        credit: true,
                        reason: reason.as_deref(),
                        key: idempotency_key.as_deref(),
                    };
                    billing::adjust(&cfg, &account, micros, movement).await
                }
                BillingAction::Debit {
                    account,
                    micros,
                    reason,
                    idempotency_key,
                } => {
                    let movement = billing::Movement {
                        credit: false,
                        reason: reason.as_deref(),
                        key: idempotency_key.as_deref(),
                    };
                    billing::adjust(&cfg, &account, micros, movement).await
                }
                BillingAction::Balance { account } => billing::balance(&cfg, &account).await,
                BillingAction::Ledger { account, limit } => {
                    billing::ledger(&cfg, &account, limit).await
                }
                BillingAction::Settle => billing::run_settlement(&cfg).await,
            }
        }),
        Command::Plugins { config, action } => on_database(config, |cfg| async move {
            match action {
                PluginsAction::Names => kiln::cli::plugins::names(&cfg).await,
                PluginsAction::Release { name } => kiln::cli::plugins::release(&cfg, &name).await,
            }
        }),
        Command::New {
            name,
            dir,
            sdk,
            lang,
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            let sdk = kiln::cli::scaffold::sdk_path(sdk.as_deref())?;
            kiln::cli::scaffold::create(&name, &dir, &sdk, lang)?;
            println!(
                "created {} — build it with: kiln build {}",
                dir.display(),
                dir.display()
            );
            Ok(())
        }
        Command::Build {
            path,
            plugins,
            config,
            debug,
        } => {
            // The directory the engine serves: --plugins, else what the
            // config says (KILN_PLUGINS_DIR over the file), else `plugins`.
            let plugins = match plugins {
                Some(dir) => dir,
                None => Config::load(config.as_deref(), |k| std::env::var(k).ok())?.plugins_dir,
            };
            let built = kiln::cli::build::build(&path, &plugins, !debug)?;
            println!("built {} → {}", built.name, built.installed.display());
            Ok(())
        }
    }
}

/// A command that works on the engine's database: loads and checks the
/// config, then runs `work` on a single-threaded runtime.
fn on_database<F>(config: Option<PathBuf>, work: impl FnOnce(Config) -> F) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let cfg = kiln::sections::load(config.as_deref(), |k| std::env::var(k).ok())?;
    cfg.validate()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(work(cfg))
}

/// `KILN_LOG` (default `info`), with `rmcp=warn` unless it names rmcp:
/// rmcp logs every MCP session's start, end and notifications at INFO, a
/// line per client action; the engine logs sessions at DEBUG itself.
fn log_filter(spec: Option<String>) -> String {
    let spec = spec
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "info".into());
    if spec.contains("rmcp") {
        spec
    } else {
        format!("{spec},rmcp=warn")
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_new(log_filter(std::env::var("KILN_LOG").ok()))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rmcp=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}
