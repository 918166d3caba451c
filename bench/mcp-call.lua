-- wrk script: one MCP tools/call per request. KILN_MCP_SESSION set: the
-- session-based protocol (2025-11-25) on that session; unset: the stateless
-- 2026-07-28 revision, with the headers and _meta it requires.
-- KILN_MCP_TOOL / KILN_MCP_ARGS pick the tool (default: echo from fixture-mcp).
-- KILN_BENCH_KEY: an API key sent as the bearer (echo needs the reader role).
local session = os.getenv("KILN_MCP_SESSION")
local tool = os.getenv("KILN_MCP_TOOL") or "echo"
local args = os.getenv("KILN_MCP_ARGS") or '{"text":"bench"}'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
local key = os.getenv("KILN_BENCH_KEY")
if key and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
local meta = ""
if session and session ~= "" then
  wrk.headers["Mcp-Session-Id"] = session
  wrk.headers["MCP-Protocol-Version"] = "2025-11-25"
else
  wrk.headers["MCP-Protocol-Version"] = "2026-07-28"
  wrk.headers["Mcp-Method"] = "tools/call"
  wrk.headers["Mcp-Name"] = tool
  meta = ',"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",'
    .. '"io.modelcontextprotocol/clientCapabilities":{},'
    .. '"io.modelcontextprotocol/clientInfo":{"name":"wrk","version":"1"}}'
end
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"' .. tool
  .. '","arguments":' .. args .. meta .. '}}'

-- Every answer must be a successful tool result, or the numbers mean nothing.
local bad = 0
response = function(status, headers, body)
  if status ~= 200 or not string.find(body, '"isError":false', 1, true) then
    bad = bad + 1
  end
end
done = function(summary, latency, requests)
  io.write(string.format("non-successful tool results: %d\n", bad))
end
