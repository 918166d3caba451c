//! Test harness: builds the `kiln` binary and the fixture plugins, starts a
//! real engine process on an ephemeral port with its own directories, and
//! captures its log so tests can assert on what it said.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use reqwest;
pub use serde_json::{Value, json};

/// A token long enough for `admin.token`.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

fn run(mut cmd: Command, what: &str) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(status.success(), "{what} failed: {status}");
}

/// The debug `kiln` binary, built once per test process. `make test`
/// builds it beside the tests (same packages, so the same features and one
/// build of the dependencies) and names it in `KILN_E2E_BIN`.
pub fn kiln_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(built) = std::env::var_os("KILN_E2E_BIN") {
            let built = PathBuf::from(built);
            assert!(
                built.is_file(),
                "KILN_E2E_BIN={} is not a file",
                built.display()
            );
            return built;
        }
        let mut c = cargo();
        c.args(["build", "--quiet", "-p", "kiln", "--bin", "kiln"]);
        run(c, "cargo build -p kiln");
        target_dir().join("debug").join("kiln")
    })
}

/// reqwest is built without a default TLS provider (the engine picks ring
/// for its JWKS client, and features are shared with this crate): every
/// client made here needs the provider installed first. Idempotent.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub const FIXTURES: &[&str] = &[
    "fixture-basic",
    "fixture-limits",
    "fixture-reload-v1",
    "fixture-reload-v2",
    "fixture-configurable",
    "fixture-kv",
    "fixture-sql",
    "fixture-pubsub",
    "fixture-mcp",
    "fixture-identity",
    "fixture-outbound",
    "hello-rust",
    "notes-rust",
    "catalog-rust",
    "tools-rust",
    "auth-rust",
    "words-rust",
];

/// JavaScript plugins, built with `kiln build` (the path a user takes):
/// (name, folder under the workspace root).
pub const JS_FIXTURES: &[(&str, &str)] = &[
    ("hello-js", "examples/hello-js"),
    ("fixture-js", "tests/fixtures-js/fixture-js"),
];

/// The component built from a JavaScript plugin folder, by the debug
/// `kiln build` (once per test process, into the target directory).
fn js_fixture(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let out = target_dir().join("e2e-js");
    BUILT.get_or_init(|| {
        for (_, folder) in JS_FIXTURES {
            let mut c = Command::new(kiln_bin());
            c.arg("build")
                .arg(workspace_root().join(folder))
                .arg("--plugins")
                .arg(&out)
                .env("KILN_SDK_PATH", workspace_root().join("sdk-guest"));
            run(c, &format!("kiln build {folder}"));
        }
    });
    out.join(format!("{name}.wasm"))
}

/// The component built from `tests/fixtures/<name>`, an example, or a
/// JavaScript plugin of [`JS_FIXTURES`].
pub fn fixture(name: &str) -> PathBuf {
    if JS_FIXTURES.iter().any(|(n, _)| *n == name) {
        return js_fixture(name);
    }
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut c = cargo();
        c.args(["build", "--quiet", "--release", "--target", "wasm32-wasip2"]);
        for f in FIXTURES {
            c.args(["-p", f]);
        }
        run(c, "cargo build of the fixture plugins");
    });
    assert!(FIXTURES.contains(&name), "unknown fixture {name}");
    target_dir()
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")))
}

/// Compiled components are shared between the engines of a test run.
fn shared_cache_dir() -> PathBuf {
    target_dir().join("e2e-compile-cache")
}

pub struct EngineBuilder {
    config: String,
    runtime: String,
    admin_token: bool,
    admin_rate_limit: String,
    access: Option<String>,
    own_cache: bool,
    dev: bool,
    env: Vec<(String, String)>,
    plugins: Vec<(String, PathBuf, Option<String>)>,
}

impl EngineBuilder {
    /// Lines for the `[runtime]` table.
    pub fn runtime(mut self, toml: &str) -> Self {
        self.runtime.push_str(toml);
        self.runtime.push('\n');
        self
    }

    /// An environment variable for the engine process.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Use the default cache under the engine's own data directory instead
    /// of the one shared by the test run.
    pub fn own_cache(mut self) -> Self {
        self.own_cache = true;
        self
    }

    /// `kiln serve --dev`, with a config that has no `[access]` table and
    /// no admin token (dev mode decides both).
    pub fn dev(mut self) -> Self {
        self.dev = true;
        self.admin_token = false;
        self
    }

    /// Start without an admin token (the admin API is then closed to all).
    pub fn without_admin_token(mut self) -> Self {
        self.admin_token = false;
        self
    }

    /// Lines for `[admin.rate_limit]`. Without it the engine's admin API
    /// allows far more than its default (60 a minute per client), since
    /// other tests poll it every 25 ms.
    pub fn admin_rate_limit(mut self, toml: &str) -> Self {
        self.admin_rate_limit = toml.to_string();
        self
    }

    /// The `[access]` table (and its `[[access.rules]]`). Without it the
    /// engine runs with `default = "public"`: the tests of other features
    /// call anonymously; the access tests say what they want.
    pub fn access(mut self, toml: &str) -> Self {
        self.access = Some(toml.to_string());
        self
    }

    /// Extra engine config tables (TOML, not `[runtime]`), appended.
    pub fn config(mut self, toml: &str) -> Self {
        self.config.push_str(toml);
        self.config.push('\n');
        self
    }

    /// Installs the component at `wasm` as `<stem>.wasm`.
    pub fn plugin_file(mut self, stem: &str, wasm: PathBuf) -> Self {
        self.plugins.push((stem.into(), wasm, None));
        self
    }

    /// Installs fixture `name` as `<stem>.wasm`, with optional `<stem>.toml`.
    pub fn plugin(mut self, stem: &str, fixture_name: &str, settings: Option<&str>) -> Self {
        self.plugins.push((
            stem.into(),
            fixture(fixture_name),
            settings.map(String::from),
        ));
        self
    }

    pub async fn start(self) -> Engine {
        let dir = tempfile::tempdir().expect("temp dir");
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).expect("plugins dir");
        for (stem, wasm, settings) in &self.plugins {
            if let Some(s) = settings {
                std::fs::write(plugins.join(format!("{stem}.toml")), s).expect("write settings");
            }
            std::fs::copy(wasm, plugins.join(format!("{stem}.wasm"))).expect("copy plugin");
        }
        let config_path = dir.path().join("kiln.toml");
        let admin = match self.admin_token {
            true => format!("[admin]\ntoken = {ADMIN_TOKEN:?}\n"),
            false => String::new(),
        };
        let admin = format!("{admin}[admin.rate_limit]\n{}\n", self.admin_rate_limit);
        let cache = match self.own_cache {
            true => String::new(),
            false => format!("cache_dir = {:?}\n", shared_cache_dir()),
        };
        let config = format!(
            "data_dir = {data:?}\n[runtime]\n{cache}reload_debounce_ms = 100\n{runtime}\n{admin}{access}\n{extra}",
            data = dir.path().join("data"),
            access = match (self.dev, self.access.as_deref()) {
                (_, Some(access)) => access,
                (true, None) => "",
                (false, None) => "[access]\ndefault = \"public\"\n",
            },
            runtime = self.runtime,
            extra = self.config,
        );
        std::fs::write(&config_path, config).expect("write config");

        let args: Vec<String> = if self.dev {
            vec!["--dev".into()]
        } else {
            Vec::new()
        };
        let (child, base, logs) = spawn(&config_path, &plugins, &self.env, &args);
        Engine {
            child,
            base,
            dir,
            logs,
            env: self.env,
            args,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }
}

/// Starts `kiln serve` and waits until it listens; its log is collected.
fn spawn(
    config_path: &Path,
    plugins: &Path,
    env: &[(String, String)],
    args: &[String],
) -> (Child, String, Arc<Mutex<Vec<String>>>) {
    let mut child = Command::new(kiln_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config_path)
        .arg("--plugins")
        .arg(plugins)
        .args(args)
        .env("KILN_LOG", "info,kiln=debug")
        .env_remove("KILN_ADMIN_TOKEN")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kiln");
    let logs = Arc::new(Mutex::new(Vec::<String>::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let logs = logs.clone();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on http://").nth(1) {
                    let addr = addr
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let _ = tx.send(addr);
                }
                logs.lock().unwrap().push(line);
            }
        });
    }
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(addr) => (child, format!("http://{addr}"), logs),
        Err(_) => {
            let _ = child.kill();
            panic!(
                "kiln did not start; log:\n{}",
                logs.lock().unwrap().join("\n")
            );
        }
    }
}

pub struct Engine {
    child: Child,
    pub base: String,
    pub dir: tempfile::TempDir,
    logs: Arc<Mutex<Vec<String>>>,
    env: Vec<(String, String)>,
    /// Extra `kiln serve` arguments (`--dev`).
    args: Vec<String>,
    pub client: reqwest::Client,
}

impl Engine {
    pub fn builder() -> EngineBuilder {
        install_tls_provider();
        EngineBuilder {
            config: String::new(),
            runtime: String::new(),
            admin_token: true,
            admin_rate_limit: "requests = 100000\nwindow_s = 1\nburst = 100000".into(),
            access: None,
            own_cache: false,
            dev: false,
            env: Vec::new(),
            plugins: Vec::new(),
        }
    }

    /// Runs a `kiln` command on this engine's config (and so its database).
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(kiln_bin())
            .args(args)
            .arg("--config")
            .arg(self.dir.path().join("kiln.toml"))
            .env("KILN_LOG", "warn")
            .output()
            .expect("run kiln")
    }

    /// Stops the process and starts it again on the same directories.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, base, logs) = spawn(
            &self.dir.path().join("kiln.toml"),
            &self.plugins_dir(),
            &self.env,
            &self.args,
        );
        self.child = child;
        self.base = base;
        self.logs = logs;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `host:port` the engine listens on.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// Sends SIGTERM to the engine process (what an orchestrator does to stop it).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(
            status.success(),
            "kill -TERM {} failed: {status}",
            self.child.id()
        );
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the log reader take the last lines.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn plugins_dir(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    /// The engine process's resident memory, in KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// How long `GET /_kiln/v1/health` takes to answer 200 (panics if it
    /// does not within 10 s): the engine's responsiveness under abuse.
    pub async fn health_latency(&self) -> Duration {
        let started = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            reqwest::Client::new()
                .get(self.url("/_kiln/v1/health"))
                .send(),
        )
        .await
        .expect("the health check answers within 10 s")
        .expect("GET /_kiln/v1/health");
        assert_eq!(r.status(), 200);
        started.elapsed()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    /// `GET path` with `x-request-id: request_id`, for tests that follow
    /// one request into the plugin or the log.
    pub async fn get_with_request_id(&self, path: &str, request_id: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header("x-request-id", request_id)
            .send()
            .await
            .expect("GET")
    }

    /// Starts `GET path` in its own task, for calls that must overlap.
    pub fn spawn_get(&self, path: &str) -> tokio::task::JoinHandle<reqwest::Response> {
        let request = self.client.get(self.url(path));
        tokio::spawn(async move { request.send().await.expect("GET") })
    }

    /// Sends `method target` as written, over a plain socket: HTTP clients
    /// normalise paths (`/./`, `//`, `..`) before sending, and the tests of
    /// path spellings must reach the engine byte for byte. Returns the
    /// status and the body (the connection is closed after one answer).
    pub async fn raw_request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> (u16, String) {
        let authority = self.base.trim_start_matches("http://");
        let mut head =
            format!("{method} {target} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        self.raw_exchange(&head).await
    }

    /// Sends `request` byte for byte (it should ask to close the
    /// connection) and returns the status and body of the answer.
    pub async fn raw_exchange(&self, request: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let authority = self.base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(authority)
            .await
            .expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
            .await
            .expect("the engine answers within 30 s")
            .expect("read");
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {answer:?}"));
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// Replaces `<stem>.wasm` the way `kiln build` does: write aside, rename.
    pub fn install(&self, stem: &str, wasm: &Path) {
        let dir = self.plugins_dir();
        let tmp = dir.join(format!(".{stem}.tmp"));
        std::fs::copy(wasm, &tmp).expect("copy");
        std::fs::rename(&tmp, dir.join(format!("{stem}.wasm"))).expect("rename");
    }

    pub fn install_bytes(&self, stem: &str, bytes: &[u8]) {
        let dir = self.plugins_dir();
        let tmp = dir.join(format!(".{stem}.tmp"));
        std::fs::write(&tmp, bytes).expect("write");
        std::fs::rename(&tmp, dir.join(format!("{stem}.wasm"))).expect("rename");
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Log lines containing every one of `parts`.
    pub fn log_lines_with(&self, parts: &[&str]) -> Vec<String> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .cloned()
            .collect()
    }

    /// The admin listing of plugins.
    pub async fn admin_plugins(&self) -> Value {
        self.admin_get("/_kiln/v1/admin/plugins").await
    }

    /// GET an admin endpoint with the admin token; asserts 200.
    pub async fn admin_get(&self, path: &str) -> Value {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("admin request");
        assert_eq!(r.status(), 200, "admin API answered {}", r.status());
        r.json().await.expect("admin JSON")
    }

    /// The admin entry for file `<stem>.wasm`.
    pub async fn admin_plugin(&self, stem: &str) -> Option<Value> {
        let all = self.admin_plugins().await;
        all["plugins"]
            .as_array()?
            .iter()
            .find(|p| p["file"] == format!("{stem}.wasm"))
            .cloned()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status, `error.code` and `error.message` of one of the engine's
/// JSON error answers (empty strings when the body has none).
pub async fn error_of(res: reqwest::Response) -> (u16, String, String) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or_default();
    let field = |k: &str| body["error"][k].as_str().unwrap_or_default().to_string();
    (status, field("code"), field("message"))
}

/// Polls `check` every 25 ms until it returns `Some` or `timeout` passes.
pub async fn wait_for<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A PostgreSQL database created for one test and dropped with it.
pub struct TestPostgres {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl TestPostgres {
    /// Creates a fresh database on the server at `KILN_TEST_POSTGRES_URL`
    /// (default: the local server). Without a server it returns `None` and
    /// says so — except under `CI=true`, where a missing service fails the test.
    pub async fn create() -> Option<TestPostgres> {
        let admin_url = std::env::var("KILN_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let mut conn = match <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url).await {
            Ok(c) => c,
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("PostgreSQL is required in CI but {admin_url} is unreachable: {e}")
            }
            Err(e) => {
                eprintln!(
                    "SKIPPED: PostgreSQL at {admin_url} is unreachable ({e}); set KILN_TEST_POSTGRES_URL"
                );
                return None;
            }
        };
        let name = format!("kiln_e2e_{}", uuid::Uuid::new_v4().simple());
        // `name` is generated above from a UUID: nothing from outside.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(&admin_url);
        let url = format!("{base}/{name}");
        Some(TestPostgres {
            admin_url,
            name,
            url,
        })
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs outside any runtime; use a small one of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
                    .await
                    .ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .ok()?;
                // Plugin roles are cluster-wide; the engine names them after
                // this database, so they can go with it.
                let prefix = kiln::store::sql::pg_role_prefix(&name);
                let roles: Vec<String> = sqlx::query_scalar(
                    "SELECT rolname::text FROM pg_roles WHERE starts_with(rolname::text, $1)",
                )
                .bind(&prefix)
                .fetch_all(&mut conn)
                .await
                .ok()?;
                for role in roles {
                    // `role` comes from pg_roles and matched our own prefix.
                    let drop = format!("DROP ROLE IF EXISTS \"{role}\"");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
                        .execute(&mut conn)
                        .await;
                }
                Some(())
            })
        })
        .join();
    }
}

/// A private `redis-server` on a free loopback port, which a test may stop
/// and start again on the same port.
pub struct TestRedis {
    pub port: u16,
    child: Option<Child>,
}

impl TestRedis {
    /// `None` (said aloud) when `redis-server` is not installed, except under
    /// `CI=true`, where that fails the test.
    pub fn start() -> Option<TestRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut r = TestRedis { port, child: None };
        match r.spawn() {
            Ok(()) => Some(r),
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("redis-server is required in CI: {e}")
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot start redis-server ({e}); apt-get install redis-server");
                None
            }
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("redis-server did not listen on port {}", self.port))
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn().expect("restart redis-server");
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Engine {
    /// `POST /graphql` with a JSON body; returns the status and the body.
    pub async fn graphql(&self, query: &str, variables: Value) -> (u16, Value) {
        let r = self
            .client
            .post(self.url("/graphql"))
            .header("accept", "application/graphql-response+json")
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("POST /graphql");
        let status = r.status().as_u16();
        (status, r.json().await.expect("GraphQL JSON"))
    }

    /// The same, expecting a 200 without errors; returns `data`.
    pub async fn graphql_ok(&self, query: &str, variables: Value) -> Value {
        let (status, body) = self.graphql(query, variables).await;
        assert_eq!(status, 200, "{query}: {body}");
        assert!(body.get("errors").is_none(), "{query}: {body}");
        body["data"].clone()
    }

    /// `ws://…` for `path`.
    pub fn ws_url(&self, path: &str) -> String {
        self.url(path).replacen("http://", "ws://", 1)
    }
}

/// `tests/js`, with its npm packages installed (once per test process).
pub fn js_clients() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = workspace_root().join("tests").join("js");
        if !dir.join("node_modules").is_dir() {
            let mut c = Command::new("npm");
            c.args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir);
            run(c, "npm ci in tests/js");
        }
        dir
    })
}

/// A Node.js client script from `tests/js`, running in the background; its
/// stdout lines are collected as they come.
pub struct NodeClient {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl NodeClient {
    pub fn start(script: &str, args: &[&str]) -> NodeClient {
        let dir = js_clients();
        let mut child = Command::new("node")
            .arg(dir.join(script))
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run node {script}: {e}; install Node.js 20"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        NodeClient { child, lines }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits for the script to exit; returns its exit code and output.
    pub async fn finish(mut self, timeout: Duration) -> (Option<i32>, Vec<String>) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader thread drain what is left.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return (status.code(), self.lines());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return (None, self.lines());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for NodeClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
