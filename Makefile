# The two commands of the README:
#   make run   build everything and serve the example plugins on http://127.0.0.1:8080
#   make test  run the whole test suite (what CI runs)
# Both install what they need first.

CARGO      ?= cargo
WASM       := wasm32-wasip2
PLUGINS    ?= plugins
EXAMPLES   := hello-rust notes-rust catalog-rust tools-rust auth-rust words-rust
FIXTURES   := fixture-basic fixture-limits fixture-reload-v1 fixture-reload-v2 fixture-configurable fixture-kv fixture-sql fixture-pubsub fixture-mcp fixture-identity fixture-outbound
GUEST_OUT  := target/$(WASM)/release

.PHONY: run test install setup js-clients js-sdk examples fixtures lint unit e2e bench clean

run: setup js-sdk examples
	$(CARGO) run --release -p kiln -- serve --dev --config examples/kiln.toml --plugins $(PLUGINS)

test: setup js-clients js-sdk lint fixtures unit e2e

# `kiln` on the PATH (~/.cargo/bin), for `kiln new` / `kiln build` /
# `kiln keys` from any folder. Not one of the two commands: the step after.
install: setup
	$(CARGO) install --locked --path engine

# The wasm target comes with the pinned toolchain (rust-toolchain.toml); this
# covers a rustup that did not install it.
setup:
	@rustup target list --installed 2>/dev/null | grep -qx $(WASM) || rustup target add $(WASM)

# The npm protocol clients the end-to-end tests drive the engine with
# (graphql-http audits, graphql-ws, graphql-sse), at the locked versions.
js-clients: tests/js/node_modules/.package-lock.json
tests/js/node_modules/.package-lock.json: tests/js/package.json tests/js/package-lock.json
	cd tests/js && npm ci --no-audit --no-fund

# The JavaScript plugin toolchain (componentize-js, esbuild) at the locked
# versions, and a type check of the SDK's TypeScript declarations against
# the JS example.
js-sdk: sdk-guest/js/node_modules/.package-lock.json
	cd sdk-guest/js && npm run --silent check
# `npm install` on the lock file, not `npm ci`: npm 11 writes a lock without
# some optional platform packages of jco's dependencies and npm ci refuses it.
# preview2-shim is pinned directly: componentize-js imports it but npm marks
# the shared copy extraneous and a lock-based install would leave it out.
sdk-guest/js/node_modules/.package-lock.json: sdk-guest/js/package.json sdk-guest/js/package-lock.json
	cd sdk-guest/js && npm install --no-audit --no-fund

# Examples are built into the plugin directory, each moved into place in one
# rename so a running engine never reads half a file.
examples:
	$(CARGO) build --release --target $(WASM) $(addprefix -p ,$(EXAMPLES))
	@mkdir -p $(PLUGINS)
	@for e in $(EXAMPLES); do \
	  f=$$(echo $$e | tr - _); \
	  cp $(GUEST_OUT)/$$f.wasm $(PLUGINS)/.$$e.wasm.tmp && mv $(PLUGINS)/.$$e.wasm.tmp $(PLUGINS)/$$e.wasm; \
	  echo "installed $(PLUGINS)/$$e.wasm"; \
	done
	$(CARGO) run --release -q -p kiln -- build examples/hello-js --plugins $(PLUGINS)

fixtures:
	$(CARGO) build --release --target $(WASM) $(addprefix -p ,$(FIXTURES) $(EXAMPLES))

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -p kiln -p kiln-sdk -p kiln-e2e -- -D warnings

# Every debug build of the tests selects the same packages. Cargo resolves
# features per invocation: with three different selections the engine's
# library was built five times and wasmtime, axum, reqwest, rmcp and some
# 30 more crates twice (criterion, a dev-dependency of the engine, turns on
# zerocopy's `derive`; the harness turns on reqwest's `http2`). Counted
# with `cargo ... --unit-graph` (RUSTC_BOOTSTRAP=1): 646 units, now 610.
TEST_PKGS    := -p kiln -p kiln-sdk -p auth-rust -p kiln-e2e
ENGINE_TESTS := $(patsubst engine/tests/%.rs,--test %,$(wildcard engine/tests/*.rs))
TARGET_DIR   := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)

unit:
	$(CARGO) test $(TEST_PKGS) --lib --bins $(ENGINE_TESTS)
	$(CARGO) test $(TEST_PKGS) --doc

# The harness uses the `kiln` built here (KILN_E2E_BIN) instead of building
# one with `-p kiln` alone, which would resolve features differently.
e2e:
	$(CARGO) build $(TEST_PKGS) --bins --tests
	KILN_E2E_BIN=$(TARGET_DIR)/debug/kiln $(CARGO) test $(TEST_PKGS) --test e2e

# Not part of `make test`: numbers, not pass/fail. See docs/performance.md.
bench: setup js-clients examples fixtures
	$(CARGO) build --release -p kiln
	$(CARGO) bench -p kiln --bench instantiate
	bench/http.sh
	bench/storage.sh
	bench/graphql.sh
	bench/mcp.sh
	bench/js.sh
	bench/memory.sh
	bench/compile.sh

clean:
	$(CARGO) clean
	rm -f $(PLUGINS)/*.wasm
