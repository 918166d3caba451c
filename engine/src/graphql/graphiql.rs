//! GraphiQL, served to browsers that `GET /graphql` asking for HTML. The page
//! loads GraphiQL from a CDN in the user's browser; the engine itself
//! fetches nothing. Subscriptions run over `/graphql/ws`.

use std::sync::LazyLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Kiln GraphiQL</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <style>body { margin: 0; height: 100vh; } #graphiql { height: 100vh; }</style>
  <link rel="stylesheet" href="https://unpkg.com/graphiql@3.9.0/graphiql.min.css" crossorigin="anonymous">
  <script src="https://unpkg.com/react@18.3.1/umd/react.production.min.js" crossorigin="anonymous"></script>
  <script src="https://unpkg.com/react-dom@18.3.1/umd/react-dom.production.min.js" crossorigin="anonymous"></script>
  <script src="https://unpkg.com/graphql-ws@5.16.2/umd/graphql-ws.min.js" crossorigin="anonymous"></script>
  <script src="https://unpkg.com/graphiql@3.9.0/graphiql.min.js" crossorigin="anonymous"></script>
</head>
<body>
  <div id="graphiql">Loading GraphiQL…</div>
  <script>
    const base = new URL('/graphql', window.location.href);
    const ws = new URL('/graphql/ws', window.location.href);
    ws.protocol = ws.protocol === 'https:' ? 'wss:' : 'ws:';
    const fetcher = GraphiQL.createFetcher({
      url: base.href,
      subscriptionUrl: ws.href,
      wsClient: graphqlWs.createClient({ url: ws.href }),
    });
    ReactDOM.createRoot(document.getElementById('graphiql'))
      .render(React.createElement(GraphiQL, { fetcher, defaultEditorToolsVisibility: true }));
  </script>
</body>
</html>
"#;

/// The page's Content-Security-Policy: scripts and styles only from the
/// pinned CDN and the page's own inline script (by its hash), requests
/// only to this engine, no framing.
static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let script = PAGE
        .rsplit_once("<script>")
        .and_then(|(_, rest)| rest.split_once("</script>"))
        .map(|(body, _)| body)
        .unwrap_or_default();
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(script.as_bytes()));
    let policy = format!(
        "default-src 'none'; script-src 'sha256-{hash}' https://unpkg.com; \
         style-src 'unsafe-inline' https://unpkg.com; img-src 'self' data: https:; \
         font-src https://unpkg.com data:; connect-src 'self' ws: wss:; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    );
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("default-src 'none'"))
});

pub fn page() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::CONTENT_SECURITY_POLICY, CSP.clone()),
        ],
        PAGE,
    )
        .into_response()
}
