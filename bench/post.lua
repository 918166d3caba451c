-- wrk script: POST with an empty body (for counters).
wrk.method = "POST"
