"""framecast gateway: what browsers and operators see (stream API, live events, player page)."""
