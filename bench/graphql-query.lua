-- wrk script: POST /graphql with a one-field query (KILN_QUERY overrides).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("KILN_QUERY") or '{"query":"{ product(sku: \\"bench\\") { name } }"}'
